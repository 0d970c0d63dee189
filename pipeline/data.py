"""Fashion-MNIST: find the four IDX files, parse and verify them, and prepare arrays.

The data is immutable: loading returns uint8 arrays exactly as published (identical to
`keras.datasets.fashion_mnist.load_data()`); preparation makes float32 copies once.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import artifacts
from pipeline.errors import ConfigError, DataError

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# SHA-256 of each decompressed IDX file (header and items), by item count.
# 60 000 / 10 000: the published dataset. Its raw MD5s match the ones in zalandoresearch's
# README, which are also the bytes Keras downloads, so the arrays are identical to Keras'.
# 4 000 / 1 000: the first items, as cut by tests/data/cut_subset.py for the test suite.
DIGESTS = {
    "train-images-idx3-ubyte.gz": {
        60000: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        4000: "09dd72e74aa8a76feaada262d167edcd489b57bc01d49240b1da1e0f2d395932",
    },
    "train-labels-idx1-ubyte.gz": {
        60000: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        4000: "bd16d103c66bdc7c4826aef758caccae538e9465d8c4fd0939db7bcb1891a702",
    },
    "t10k-images-idx3-ubyte.gz": {
        10000: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        1000: "7a6d8e07ea021ec5bc73135ebd0a5770799557ec6f8242d8749c4f32a3cf4643",
    },
    "t10k-labels-idx1-ubyte.gz": {
        10000: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        1000: "b40abac7ec8228f434940f579deb7cf7b6e3103b5274cb91d1545771f5ef1c8b",
    },
}

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "DAE_DATA_DIR"
KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
KERAS_SUBDIR = os.path.join("datasets", "fashion-mnist")  # inside KERAS_HOME, as load_data() has it
HOW_TO_GET = (
    "install the Debian/Ubuntu package (sudo apt-get install dataset-fashion-mnist) "
    "or connect to the network so Keras can download it"
)

IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801  # IDX: unsigned bytes, 3 or 1 dimensions
IMAGE_SIZE = (28, 28)


@dataclass(frozen=True)
class Dataset:
    train_images: np.ndarray  # (N, 28, 28) uint8
    train_labels: np.ndarray  # (N,) uint8 in 0..9
    test_images: np.ndarray  # (M, 28, 28) uint8
    test_labels: np.ndarray  # (M,) uint8
    source: Path  # the folder the four files came from
    digests: dict[str, str]  # file name -> SHA-256 of its decompressed IDX bytes


def locate(data_dir: str | Path | None = None) -> Path:
    """The folder that holds the four files: --data-dir, $DAE_DATA_DIR, the Debian package,
    the Keras cache, and finally Keras' own download. An explicit folder is never second-guessed."""
    explicit = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if explicit is not None:
        folder = Path(explicit).expanduser().resolve()
        _require_folder(folder)
        return folder
    candidates = [DEBIAN_DIR, _keras_cache_dir()]
    for folder in candidates:
        if all((folder / name).is_file() for name in FILES.values()):
            return folder
    return _download(candidates)


def fill_keras_cache(folder: Path, keras_home: Path) -> Path:
    """Make `keras_home` a Keras cache holding the four files of `folder` (links to them), so
    that `keras.datasets.fashion_mnist.load_data()` with KERAS_HOME=`keras_home` reads them
    instead of downloading. Returns the datasets folder."""
    target = Path(keras_home) / KERAS_SUBDIR
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        link = target / name
        link.unlink(missing_ok=True)
        link.symlink_to(Path(folder).resolve() / name)
    return target


def load(folder: str | Path) -> Dataset:
    """Parse and verify the four files in `folder`."""
    folder = Path(folder)
    _require_folder(folder)
    arrays, digests = {}, {}
    for key, name in FILES.items():
        arrays[key], digests[name] = read_idx(folder / name)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != IMAGE_SIZE:
            raise DataError(
                f"{folder / FILES[f'{split}_images']}: images are {images.shape[1:]}, "
                f"expected {IMAGE_SIZE}; {HOW_TO_GET}"
            )
        if labels.ndim != 1:
            raise DataError(f"{folder / FILES[f'{split}_labels']}: labels must be one-dimensional")
        if len(images) != len(labels):
            raise DataError(
                f"{folder}: {len(images)} {split} images but {len(labels)} labels; {HOW_TO_GET}"
            )
        if labels.size and labels.max() >= len(CLASS_NAMES):
            raise DataError(
                f"{folder / FILES[f'{split}_labels']}: label {labels.max()} is outside 0-9"
            )
    for name, digest in digests.items():
        _verify_digest(folder / name, digest, len(arrays[_key(name)]))
    return Dataset(**arrays, source=folder.resolve(), digests=digests)


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Decode one gzipped IDX file: (array of uint8, SHA-256 of the decompressed bytes).

    No read goes past what the file may hold: it must be a regular file no larger than the
    published one stored uncompressed, and its stream is decompressed no further than its
    header says it goes, that header no further than the published file's size. A gzip bomb or
    /dev/zero stops at the first byte too many, in constant memory."""
    largest = _published_size(path.name)
    # Stored (uncompressed) deflate blocks add 5 bytes per 64 KiB; the gzip header, a file name.
    stored = largest + largest // 100 + 4096
    try:
        with artifacts.open_regular(path, "data file", DataError, stored) as file:
            with gzip.GzipFile(fileobj=file) as stream:
                raw, header_size, dims = _decompress_idx(stream, path, largest)
    except FileNotFoundError:
        raise DataError(f"{path} is missing; {HOW_TO_GET}") from None
    except PermissionError:
        raise DataError(f"{path} cannot be read (permission denied)") from None
    except EOFError:
        raise DataError(
            f"{path} is truncated (the gzip stream ends early); {_replace(path)}"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path} is not a valid gzip file ({error}); {_replace(path)}") from None
    except OSError as error:
        reason = error.strerror or error
        raise DataError(f"{path} cannot be read ({reason}); {_replace(path)}") from None
    array = np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)
    return array, hashlib.sha256(raw).hexdigest()


def _decompress_idx(stream, path: Path, largest: int) -> tuple[bytes, int, tuple[int, ...]]:
    """The IDX bytes of `stream`: (header and items, header size, dimensions). The header is
    read first; then as many bytes as it announces, and one more to tell a longer stream."""
    raw = stream.read(4)
    if len(raw) < 4:
        raise DataError(f"{path} is empty or too short to be an IDX file; {_replace(path)}")
    magic, ndim = struct.unpack(">I", raw)[0], raw[3]
    if magic not in (IMAGE_MAGIC, LABEL_MAGIC):
        raise DataError(
            f"{path} has IDX magic number 0x{magic:08x}, expected 0x{IMAGE_MAGIC:08x} (images) "
            f"or 0x{LABEL_MAGIC:08x} (labels); {_replace(path)}"
        )
    header_size = 4 + 4 * ndim
    raw += stream.read(header_size - 4)
    if len(raw) < header_size:
        raise DataError(f"{path} is too short for its IDX header; {_replace(path)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_size])
    expected = header_size + math.prod(dims)  # Python integers: no overflow for any header
    if expected > largest:
        raise DataError(
            f"{path}: its IDX header {dims} needs {expected} bytes, more than the published "
            f"file's {largest}; {_replace(path)}"
        )
    raw += stream.read(expected - header_size + 1)
    if len(raw) > expected:
        raise DataError(
            f"{path} holds more than the {expected} bytes its header {dims} needs (read no "
            f"further); {_replace(path)}"
        )
    if len(raw) < expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header {dims} needs {expected}; "
            f"{_replace(path)}"
        )
    return raw, header_size, dims


def _published_size(name: str) -> int:
    """The decompressed size of the published file `name` (header and items): the largest
    any copy we accept can be."""
    count = max(DIGESTS[name])
    return 16 + count * IMAGE_SIZE[0] * IMAGE_SIZE[1] if "images" in name else 8 + count


def to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], as lab §2 does."""
    unit = images.astype(np.float32)
    unit /= 255.0  # in place: no second float copy of the 60 000 images
    return unit[..., np.newaxis]


def limit(images: np.ndarray, labels: np.ndarray, count: int | None, what: str):
    """The first `count` items (all when None); a limit larger than the data is bad input."""
    if count is None:
        return images, labels
    if count > len(images):
        raise ConfigError(
            f"data.{what}_limit = {count} but the {what} set has {len(images)} images"
        )
    return images[:count], labels[:count]


def validation_size(train_count: int, val_fraction: float) -> int:
    """How many of `train_count` images are validation; both splits need at least one."""
    val_size = int(train_count * val_fraction)
    if val_size == 0 or val_size == train_count:
        raise ConfigError(
            f"split.val_fraction = {val_fraction} leaves {val_size} of {train_count} training "
            "images for validation; both splits need at least one image (raise "
            "data.train_limit or change split.val_fraction)"
        )
    return val_size


def require_every_class(labels: np.ndarray, count: int | None, what: str) -> None:
    """The report evaluates each of the ten classes: a limit whose first `count` of `labels`
    leave one out is bad input, named with the smallest limit that keeps them all."""
    kept = labels if count is None else labels[:count]
    missing = [name for label, name in enumerate(CLASS_NAMES) if not np.any(kept == label)]
    if not missing:
        return
    firsts = [np.flatnonzero(labels == label)[:1] for label in range(len(CLASS_NAMES))]
    enough = max(int(first[0]) + 1 for first in firsts) if all(f.size for f in firsts) else None
    raise ConfigError(
        f"data.{what}_limit = {len(kept)} leaves no {what} image of {', '.join(missing)}; the "
        "report evaluates every class"
        + (f" (the first {enough} {what} images hold all ten)" if enough else "")
    )


def _key(name: str) -> str:
    return next(key for key, file_name in FILES.items() if file_name == name)


def _verify_digest(path: Path, digest: str, count: int) -> None:
    known = DIGESTS[path.name]
    if count not in known:
        counts = " or ".join(str(c) for c in known)
        raise DataError(
            f"{path} holds {count} items, expected {counts} (the published Fashion-MNIST); "
            f"{_replace(path)}"
        )
    if digest != known[count]:
        raise DataError(
            f"{path} does not match the published Fashion-MNIST (SHA-256 {digest[:12]}…, "
            f"expected {known[count][:12]}…): it was altered or corrupted; {_replace(path)}"
        )


def _require_folder(folder: Path) -> None:
    if not folder.exists():
        raise DataError(f"data folder {folder} does not exist; {HOW_TO_GET}")
    if not folder.is_dir():
        raise DataError(f"data folder {folder} is a file, not a folder")
    if not _readable(folder):
        raise DataError(f"data folder {folder} cannot be read (permission denied)")


def _readable(folder: Path) -> bool:
    return os.access(folder, os.R_OK | os.X_OK)


def _replace(path: Path) -> str:
    return (
        "replace it with a good copy (sudo apt-get install --reinstall dataset-fashion-mnist, "
        f"or delete {path} and let Keras download it)"
    )


def _keras_cache_dir() -> Path:
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / KERAS_SUBDIR


def _download(looked_in: list[Path]) -> Path:
    """Keras' own download, with the same origin and cache folder as `load_data()`."""
    places = ", ".join(str(p) for p in looked_in)
    try:
        from keras.utils import get_file

        paths = [
            get_file(name, origin=KERAS_ORIGIN + name, cache_subdir=KERAS_SUBDIR)
            for name in FILES.values()
        ]
    except Exception as error:  # any network or file failure means: no copy to be had
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(
            f"Fashion-MNIST not found (looked in {places}) and the download failed ({reason}); "
            f"{HOW_TO_GET}"
        ) from None
    return Path(paths[0]).parent
