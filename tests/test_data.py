import gzip
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from pipeline import data
from pipeline.errors import ConfigError, DataError
from tests.conftest import SUBSET_DIR


def test_loads_the_real_subset():
    dataset = data.load(SUBSET_DIR)
    assert dataset.train_images.shape == (4000, 28, 28)
    assert dataset.test_images.shape == (1000, 28, 28)
    assert dataset.train_images.dtype == np.uint8
    assert dataset.train_labels.shape == (4000,)
    assert set(np.unique(dataset.train_labels)) == set(range(10))
    # The first training image of Fashion-MNIST is an ankle boot (label 9), as Keras returns it.
    assert dataset.train_labels[0] == 9
    assert (
        dataset.digests["train-images-idx3-ubyte.gz"]
        == data.DIGESTS["train-images-idx3-ubyte.gz"][4000]
    )


# The README's lookup order: --data-dir, $DAE_DATA_DIR, the Debian package, the Keras cache
# ~/.keras/datasets/fashion-mnist/, and finally Keras' download.
STEPS = ("--data-dir", "$DAE_DATA_DIR", "Debian package", "Keras cache", "Keras download")


@pytest.fixture
def places(tmp_path, monkeypatch) -> dict:
    """A real copy of the subset in every place the lookup looks, the environment pointing at
    them (HOME, DEBIAN_DIR), and a Keras download that records its calls and "downloads" from
    the subset: the network is not under test, the order is."""
    folders = {
        step: tmp_path / f"place-{index}" / "fashion-mnist" for index, step in enumerate(STEPS[:3])
    }
    folders["Keras cache"] = tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist"
    for folder in folders.values():
        shutil.copytree(SUBSET_DIR, folder)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folders["$DAE_DATA_DIR"]))
    monkeypatch.setattr(data, "DEBIAN_DIR", folders["Debian package"])
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    downloads = []

    def download(fname, origin, cache_subdir):
        downloads.append((fname, origin, cache_subdir))
        target = tmp_path / "home" / ".keras" / cache_subdir / fname
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SUBSET_DIR / fname, target)
        return str(target)

    monkeypatch.setattr("keras.utils.get_file", download)
    return {"folders": folders, "downloads": downloads}


def remove_step(step: str, folders: dict, monkeypatch) -> None:
    if step == "$DAE_DATA_DIR":
        monkeypatch.delenv(data.DATA_DIR_ENV)
    elif step != "--data-dir":  # a place that is not there
        shutil.rmtree(folders[step])


@pytest.mark.parametrize("winner", STEPS)
def test_each_place_wins_over_the_later_ones(winner, places, monkeypatch):
    folders = places["folders"]
    for step in STEPS[: STEPS.index(winner)]:
        remove_step(step, folders, monkeypatch)
    found = data.locate(folders["--data-dir"] if winner == "--data-dir" else None)
    expected = folders.get(winner, folders["Keras cache"])  # Keras downloads into its cache
    assert found == expected.resolve()
    assert data.load(found).train_images.shape == (4000, 28, 28)
    if winner == "Keras download":
        assert places["downloads"] == [
            (name, data.KERAS_ORIGIN + name, os.path.join("datasets", "fashion-mnist"))
            for name in data.FILES.values()
        ]
    else:
        assert places["downloads"] == []


def test_a_place_missing_a_file_is_passed_over(places, monkeypatch):
    """Only a folder with all four files is a copy: a Debian folder lacking one is skipped."""
    folders = places["folders"]
    monkeypatch.delenv(data.DATA_DIR_ENV)
    (folders["Debian package"] / "t10k-labels-idx1-ubyte.gz").unlink()
    assert data.locate() == folders["Keras cache"].resolve()


def test_an_explicit_folder_is_never_second_guessed(places, monkeypatch, tmp_path):
    """$DAE_DATA_DIR naming a folder without the files is an error, not a fall-through."""
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere does not exist"):
        data.locate()


def test_arrays_identical_to_keras_load_data(tmp_path, monkeypatch):
    """The package's arrays against `keras.datasets.fashion_mnist.load_data()`, both reading one
    Keras cache laid out from the subset (Keras reads whatever count of images it finds)."""
    keras_home = tmp_path / "keras"
    keras_cache = keras_home / "datasets" / "fashion-mnist"
    shutil.copytree(SUBSET_DIR, keras_cache)
    saved = tmp_path / "keras-arrays.npz"
    script = (
        "import sys, numpy\n"
        "from keras.datasets import fashion_mnist\n"
        "(a, b), (c, d) = fashion_mnist.load_data()\n"
        "numpy.savez(sys.argv[1], train_images=a, train_labels=b, test_images=c, test_labels=d)\n"
    )
    env = {**os.environ, "KERAS_HOME": str(keras_home)}
    subprocess.run(
        [sys.executable, "-c", script, str(saved)],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
    )
    assert sorted(path.name for path in keras_cache.iterdir()) == sorted(
        data.FILES.values()
    )  # nothing downloaded

    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "no-debian-package")
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    dataset = data.load(data.locate())
    assert dataset.source == keras_cache.resolve()
    with np.load(saved) as keras_arrays:
        for name in ("train_images", "train_labels", "test_images", "test_labels"):
            ours, theirs = getattr(dataset, name), keras_arrays[name]
            assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), name
            np.testing.assert_array_equal(ours, theirs, err_msg=name)


def test_no_copy_anywhere_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "none")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr("keras.utils.get_file", offline)
    with pytest.raises(DataError) as raised:
        data.locate()
    message = str(raised.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "connect to the network" in message
    assert "network unreachable" in message


def _rewrite(path, transform):
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(transform(raw)))


LABELS = "train-labels-idx1-ubyte.gz"
IMAGES = "train-images-idx3-ubyte.gz"


@pytest.mark.parametrize(
    "name, damage, message",
    [
        (IMAGES, lambda p: p.unlink(), "is missing"),
        (IMAGES, lambda p: p.write_bytes(b""), "is empty or too short"),
        (IMAGES, lambda p: p.write_bytes(p.read_bytes()[:100_000]), "is truncated"),
        (IMAGES, lambda p: p.write_bytes(b"not a gzip file at all"), "is not a valid gzip file"),
        (
            IMAGES,
            lambda p: _rewrite(p, lambda raw: b"\x00\x00\x08\x02" + raw[4:]),
            "magic number 0x00000802",
        ),
        (
            IMAGES,
            lambda p: _rewrite(p, lambda raw: raw[:-1]),
            "holds 3136015 bytes but its header (4000, 28, 28) needs 3136016",
        ),
        (
            IMAGES,
            lambda p: _rewrite(
                p,
                lambda raw: (
                    raw[:4] + struct.pack(">III", 4000, 28, 14) + raw[16 : 16 + 4000 * 28 * 14]
                ),
            ),
            "images are (28, 14)",
        ),
        (
            LABELS,
            lambda p: _rewrite(p, lambda raw: raw[:4] + struct.pack(">I", 3999) + raw[8:-1]),
            "4000 train images but 3999 labels",
        ),
        (LABELS, lambda p: _rewrite(p, lambda raw: raw[:-1] + b"\x0c"), "label 12 is outside 0-9"),
        (
            IMAGES,
            lambda p: _rewrite(p, lambda raw: raw[:-1] + bytes([raw[-1] ^ 1])),
            "does not match the published",
        ),
        (
            IMAGES,
            lambda p: _rewrite(
                p, lambda raw: raw[:4] + struct.pack(">I", 3000) + raw[8 : 16 + 3000 * 784]
            ),
            "holds 3000 items, expected 60000 or 4000",
        ),
    ],
)
def test_damaged_files_name_the_file(subset_copy, name, damage, message):
    damage(subset_copy / name)
    if name == IMAGES and "3000 items" in message:  # keep labels consistent with the images
        _rewrite(
            subset_copy / LABELS, lambda raw: raw[:4] + struct.pack(">I", 3000) + raw[8 : 8 + 3000]
        )
    with pytest.raises(DataError) as raised:
        data.load(subset_copy)
    assert message in str(raised.value)
    assert str(subset_copy) in str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_data_folder(tmp_path, kind):
    folder = tmp_path / "data"
    if kind == "file":
        folder.write_text("")
    with pytest.raises(DataError, match="does not exist" if kind == "missing" else "is a file"):
        data.locate(folder)


def test_to_unit_float_adds_channel_and_scales():
    images = np.array([[[0, 255], [51, 102]]], dtype=np.uint8)
    unit = data.to_unit_float(images)
    assert unit.shape == (1, 2, 2, 1) and unit.dtype == np.float32
    np.testing.assert_allclose(unit[0, :, :, 0], [[0.0, 1.0], [0.2, 0.4]])


def test_split_needs_both_sides():
    with pytest.raises(ConfigError, match="leaves 0 of 5 training images"):
        data.validation_size(5, 0.1)


def test_limit_larger_than_data_is_bad_input():
    images, labels = np.zeros((10, 28, 28)), np.zeros(10)
    assert len(data.limit(images, labels, 4, "train")[0]) == 4
    with pytest.raises(ConfigError, match="data.train_limit = 11 but the train set has 10 images"):
        data.limit(images, labels, 11, "train")


@pytest.mark.parametrize(
    "count, missing", [(1, "Trouser"), (10, "Dress"), (19, "T-shirt"), (20, None), (None, None)]
)
def test_a_test_limit_must_keep_every_class(count, missing):
    labels = data.load(SUBSET_DIR).test_labels  # the first 20 test images hold all ten classes
    if count is not None and count < 20:
        with pytest.raises(
            ConfigError,
            match=rf"data.test_limit = {count} leaves no test image of .*{missing}.*"
            r"the report evaluates every class \(the first 20 test images hold all ten\)",
        ):
            data.require_every_class(labels, count, "test")
    else:
        data.require_every_class(labels, count, "test")


@pytest.mark.parametrize("count, fraction, size", [(10, 0.1, 1), (100, 0.1, 10), (3, 0.5, 1)])
def test_validation_size(count, fraction, size):
    assert data.validation_size(count, fraction) == size


@pytest.mark.parametrize("count, fraction", [(9, 0.1), (1, 0.5), (2, 0.4)])
def test_a_split_with_an_empty_side_is_bad_input(count, fraction):
    with pytest.raises(ConfigError, match="both splits need at least one image"):
        data.validation_size(count, fraction)
