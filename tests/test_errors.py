"""Bad input, faults and interruptions: each ends in one line, the right exit code, and no
damage: no traceback, no half-written report marked `latest`, no earlier run touched.

The table is the contract; README "Exit codes" lists the same cases."""

import gzip
import json
import os
import pty
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest

from pipeline import cli
from tests.conftest import RUN_SAMPLE_DIR, SUBSET_DIR, TESTS_DIR, TINY, interruptible


def _rewrite(path, transform):
    path.write_bytes(gzip.compress(transform(gzip.decompress(path.read_bytes()))))


IMAGES, LABELS = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"


def _data(damage):
    """A setup step that damages one file of the data copy."""
    return lambda case: damage(case.data)


def _write(name, text):
    def setup(case):
        path = case.tmp / name
        path.mkdir() if text is None else path.write_text(text, encoding="utf-8")

    return setup


def _write_bytes(name, content):
    return lambda case: (case.tmp / name).write_bytes(content)


def _socket(name):
    """A Unix socket where a file should be: opening one fails, stat says what it is."""

    def setup(case):
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(case.tmp / name))  # the socket file stays after close

    return setup


def _fifo(name):
    """A named pipe where a file should be: opening it for reading blocks until a writer comes."""

    def setup(case):
        (case.tmp / name).unlink(missing_ok=True)
        os.mkfifo(case.tmp / name)

    return setup


def _link(name, target):
    def setup(case):
        (case.tmp / name).unlink(missing_ok=True)
        (case.tmp / name).symlink_to(target)

    return setup


def _baseline(text):
    """--compare-to {tmp}/baseline.json holding `text`."""
    return lambda case: (case.tmp / "baseline.json").write_text(text, encoding="utf-8")


def _metric(path, raw):
    """A real metrics.json whose value at `path` is the JSON text `raw` (NaN, 400 digits...)."""
    metrics = json.loads((RUN_SAMPLE_DIR / "metrics.json").read_text(encoding="utf-8"))
    table = metrics
    for key in path[:-1]:
        table = table[key]
    table[path[-1]] = "@@raw@@"
    return _baseline(json.dumps(metrics, indent=2).replace('"@@raw@@"', raw))


MSE, PSNR, SSIM = (
    ("reconstruction", "mse", "mean"),
    ("reconstruction", "psnr_of_mean_mse"),
    ("reconstruction", "ssim", "mean"),
)
VAL_LOSS = ("training", "val_loss")
DEEP = 100_000


def _png(body: bytes | None = None, cut: int | None = None) -> bytes:
    """tests/data/pixel.png, cut short, or with its IDAT chunk's data replaced by `body` and
    the chunk's CRC recomputed: every checksum holds, but the pixels do not decode."""
    png = (TESTS_DIR / "data" / "pixel.png").read_bytes()
    if cut is not None:
        return png[:cut]
    start = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[start : start + 4])
    chunk = b"IDAT" + body
    rebuilt = struct.pack(">I", len(body)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return png[:start] + rebuilt + png[start + 12 + length :]


LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE svg [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">\n'
        for n in range(1, 10)
    )
    + ']>\n<svg xmlns="http://www.w3.org/2000/svg"><text>&lol9;</text></svg>\n'
)
SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>\n'


def _images_header(count: int, body: bytes = b"") -> bytes:
    return gzip.compress(struct.pack(">IIII", 0x00000803, count, 28, 28) + body)


def _gzip_bomb(path: Path, gigabytes: int = 2) -> None:
    """A valid gzip file of an IDX header for 4 000 images followed by `gigabytes` GB of zeros,
    about 1 MB per GB, written in 2 s: one megabyte of zeros deflated after a full flush (no
    reference to earlier data) is the same block every time, so it is repeated, not recompressed."""
    header, zeros = struct.pack(">IIII", 0x00000803, 4000, 28, 28), bytes(2**20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(header) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    assert deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH) == block
    blocks, crc = 1024 * gigabytes, zlib.crc32(header)
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    with path.open("wb") as file:
        file.write(
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + head
        )  # gzip header: deflate, no name
        for _ in range(blocks):
            file.write(block)
        file.write(deflate.flush())  # the final, empty block
        file.write(struct.pack("<II", crc, (len(header) + blocks * len(zeros)) % 2**32))


# (case, extra arguments, setup, exit code, message). {tmp} and {data} are filled in.
CASES = [
    # config and options
    ("unknown section", ["--set", "nosie.std=0.3"], None, 2, "unknown config key 'nosie'"),
    ("unknown key", ["--set", "noise.sdt=0.3"], None, 2, "unknown config key 'noise.sdt'"),
    (
        "wrong type",
        ["--set", "training.epochs=ten"],
        None,
        2,
        "training.epochs must be an integer, got 'ten'",
    ),
    ("negative std", ["--set", "noise.std=-0.1"], None, 2, "noise.std = -0.1 is out of range"),
    ("zero std", ["--set", "noise.std=0"], None, 2, "noise.std = 0.0 is out of range"),
    ("zero epochs", ["--set", "training.epochs=0"], None, 2, "training.epochs = 0 is out of range"),
    (
        "zero batch",
        ["--set", "training.batch_size=0"],
        None,
        2,
        "training.batch_size = 0 is out of range",
    ),
    (
        "val_fraction 0",
        ["--set", "split.val_fraction=0"],
        None,
        2,
        "split.val_fraction = 0.0 is out of range",
    ),
    (
        "val_fraction 1",
        ["--set", "split.val_fraction=1"],
        None,
        2,
        "split.val_fraction = 1.0 is out of range",
    ),
    (
        "limit larger than the data",
        ["--set", "data.train_limit=5000"],
        None,
        2,
        "data.train_limit = 5000 but the train set has 4000 images",
    ),
    (
        "unknown model",
        ["--set", "model.name=vgg"],
        None,
        2,
        "model.name = 'vgg' is not one of: lab, residual, unet",
    ),
    (
        "unknown noise type",
        ["--set", "noise.type=pink"],
        None,
        2,
        "noise.type = 'pink' is not one of: gaussian, poisson, speckle, salt_pepper",
    ),
    (
        "std_range with speckle noise",
        ["--set", "noise.type=speckle", "--set", "noise.std_range=[0.1, 0.5]"],
        None,
        2,
        "noise.std_range applies to gaussian noise only, not noise.type = 'speckle'",
    ),
    (
        "unknown language",
        ["--set", "report.lang=fr"],
        None,
        2,
        "report.lang = 'fr' is not one of: es, en",
    ),
    (
        "malformed TOML",
        ["--config", "{tmp}/bad.toml"],
        _write("bad.toml", "[training\nepochs = 3"),
        2,
        "is not valid TOML",
    ),
    ("missing --config file", ["--config", "{tmp}/none.toml"], None, 2, "config file not found"),
    (
        "--config is a folder",
        ["--config", "{tmp}/folder.toml"],
        _write("folder.toml", None),
        2,
        "config file is a directory",
    ),
    (
        "conflicting options",
        ["--lang", "en", "--set", "report.lang=es"],
        None,
        2,
        "conflicting options: --lang en and --set report.lang=es",
    ),
    (
        "logo that is not an image",
        ["--set", "report.logo={tmp}/logo.png"],
        _write("logo.png", "root:x:0:0"),
        2,
        "is not a PNG, JPEG or SVG image",
    ),
    # data
    ("missing file", [], _data(lambda d: (d / IMAGES).unlink()), 2, f"{IMAGES} is missing"),
    ("empty file", [], _data(lambda d: (d / IMAGES).write_bytes(b"")), 2, "is empty or too short"),
    (
        "truncated gzip",
        [],
        _data(lambda d: (d / IMAGES).write_bytes((d / IMAGES).read_bytes()[:50_000])),
        2,
        "is truncated",
    ),
    (
        "not gzip",
        [],
        _data(lambda d: (d / IMAGES).write_bytes(b"<html>not found</html>")),
        2,
        "is not a valid gzip file",
    ),
    (
        "wrong magic number",
        [],
        _data(lambda d: _rewrite(d / IMAGES, lambda r: b"\0\0\x08\x02" + r[4:])),
        2,
        "magic number 0x00000802",
    ),
    (
        "wrong image size",
        [],
        _data(
            lambda d: _rewrite(
                d / IMAGES,
                lambda r: r[:4] + struct.pack(">III", 4000, 28, 14) + r[16 : 16 + 4000 * 392],
            )
        ),
        2,
        "images are (28, 14)",
    ),
    (
        "label count != image count",
        [],
        _data(lambda d: _rewrite(d / LABELS, lambda r: r[:4] + struct.pack(">I", 3999) + r[8:-1])),
        2,
        "4000 train images but 3999 labels",
    ),
    (
        "label outside 0-9",
        [],
        _data(lambda d: _rewrite(d / LABELS, lambda r: r[:-1] + b"\x0c")),
        2,
        "label 12 is outside 0-9",
    ),
    (
        "digest mismatch",
        [],
        _data(lambda d: _rewrite(d / IMAGES, lambda r: r[:-1] + bytes([r[-1] ^ 1]))),
        2,
        "does not match the published Fashion-MNIST",
    ),
    (
        "data folder is a file",
        ["--data-dir", "{tmp}/file"],
        _write("file", ""),
        2,
        "is a file, not a folder",
    ),
    # output
    (
        "--out is a file",
        ["--out", "{tmp}/out-file"],
        _write("out-file", ""),
        2,
        "is a file, not a folder",
    ),
    # not a regular file (a FIFO blocks the reader: those cases are subprocesses, HOSTILE_FILES)
    (
        "--config is a socket",
        ["--config", "{tmp}/socket.toml"],
        _socket("socket.toml"),
        2,
        "config file is a socket, not a regular file: ",
    ),
    (
        "logo is a folder",
        ["--set", "report.logo={tmp}/logo.png"],
        _write("logo.png", None),
        2,
        "report.logo is a directory, not a regular file: ",
    ),
    (
        "--compare-to is a socket",
        ["--compare-to", "{tmp}/socket.json"],
        _socket("socket.json"),
        2,
        "--compare-to is a socket, not a regular file: ",
    ),
    (
        "data file is a folder",
        [],
        _data(lambda d: ((d / IMAGES).unlink(), (d / IMAGES).mkdir())),
        2,
        "data file is a directory, not a regular file: ",
    ),
    (
        "data file is /dev/null",
        [],
        _link(f"data/{IMAGES}", "/dev/null"),
        2,
        "data file is a character device, not a regular file: ",
    ),
    # hostile --compare-to: checked in full before any work
    (
        "--compare-to: a string metric",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(MSE, '"0.0118"'),
        2,
        (
            "not a dae-report metrics.json "
            '($.reconstruction.mse.mean must be a finite number, got "0.0118")'
        ),
    ),
    (
        "--compare-to: a boolean metric",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(SSIM, "true"),
        2,
        "($.reconstruction.ssim.mean must be a finite number, got true)",
    ),
    (
        "--compare-to: NaN",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(PSNR, "NaN"),
        2,
        "not a dae-report metrics.json (it holds NaN, not a finite number)",
    ),
    (
        "--compare-to: -Infinity",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(SSIM, "-Infinity"),
        2,
        "(it holds -Infinity, not a finite number)",
    ),
    (
        "--compare-to: 1e400, infinite as a float",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(PSNR, "1e400"),
        2,
        "($.reconstruction.psnr_of_mean_mse must be a finite number, got Infinity)",
    ),
    (
        "--compare-to: a 400-digit integer",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(MSE, "1" + "0" * 400),
        2,
        "($.reconstruction.mse.mean must be a finite number, got 1000000000",
    ),
    (
        "--compare-to: 100 000-deep nesting",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(MSE, "[" * DEEP + "]" * DEEP),
        2,
        "not a dae-report metrics.json (nested too deeply)",
    ),
    (
        "--compare-to: a JSON array",
        ["--compare-to", "{tmp}/baseline.json"],
        _baseline("[1, 2, 3]"),
        2,
        "not a dae-report metrics.json ($ must be a JSON object, got [1, 2, 3])",
    ),
    (
        "--compare-to: no val_loss history",
        ["--compare-to", "{tmp}/baseline.json"],
        _metric(VAL_LOSS, "[]"),
        2,
        "($.training.val_loss must be a non-empty list of finite numbers, got [])",
    ),
    (
        "--compare-to: 17 MB",
        ["--compare-to", "{tmp}/baseline.json"],
        _baseline(" " * 17_000_000 + "{}"),
        2,
        "--compare-to is larger than 16 MiB: ",
    ),
    (
        "config over 1 MiB",
        ["--config", "{tmp}/big.toml"],
        _write("big.toml", "#" * 2**20 + "\nseed = 7\n"),
        2,
        "config file is larger than 1 MiB: ",
    ),
    (
        "logo over 10 MiB",
        ["--set", "report.logo={tmp}/logo.png"],
        lambda case: (case.tmp / "logo.png").write_bytes(bytes(10 * 2**20 + 1)),
        2,
        "report.logo is larger than 10 MiB: ",
    ),
    # the logo, parsed when the config is loaded
    (
        "logo: 0-byte PNG",
        ["--set", "report.logo={tmp}/logo.png"],
        _write_bytes("logo.png", b""),
        2,
        "logo.png is empty, not a PNG, JPEG or SVG image",
    ),
    (
        "logo: truncated PNG",
        ["--set", "report.logo={tmp}/logo.png"],
        _write_bytes("logo.png", _png(cut=45)),
        2,
        "logo.png is a damaged PNG image (",
    ),
    (
        "logo: PNG whose pixels do not decode",
        ["--set", "report.logo={tmp}/logo.png"],
        _write_bytes("logo.png", _png(body=b"\x78\x9c" + b"\xff" * 12)),
        2,
        "logo.png is a damaged PNG image (",
    ),
    (
        "logo: SVG with entities (billion laughs)",
        ["--set", "report.logo={tmp}/logo.svg"],
        _write("logo.svg", LAUGHS),
        2,
        "logo.svg has a DOCTYPE (DTDs and entities are refused in a logo)",
    ),
    (
        "logo: SVG that is not well-formed",
        ["--set", "report.logo={tmp}/logo.svg"],
        _write("logo.svg", SVG.replace("/>", ">")),
        2,
        "logo.svg is not well-formed XML (no element found, line 2)",
    ),
    (
        "logo: an HTML page named .svg",
        ["--set", "report.logo={tmp}/logo.svg"],
        _write("logo.svg", "<html><body><svg/></body></html>"),
        2,
        "logo.svg is XML but not SVG (its root element is <html>)",
    ),
    # reads bounded by the published sizes (the endless ones are subprocesses, HOSTILE_FILES)
    (
        "IDX header claims 2^31 images",
        [],
        _data(lambda d: (d / IMAGES).write_bytes(_images_header(2**31, bytes(1000)))),
        2,
        (
            "its IDX header (2147483648, 28, 28) needs 1683627180048 bytes, "
            "more than the published file's 47040016"
        ),
    ),
]


class Case:
    """A copy of the data and an output folder in `tmp`. Every case fails before any training
    (TINY options): should one regress, the run it starts is a small one."""

    def __init__(self, tmp: Path):
        self.tmp, self.data, self.out = tmp, tmp / "data", tmp / "reports"

    def argv(self, extra):
        base = ["build", *TINY, "--data-dir", str(self.data), "--out", str(self.out)]
        return base + [arg.format(tmp=self.tmp, data=self.data) for arg in extra]


# The output folder is checked when the run folder is made, after the data stage said its line.
AFTER_THE_DATA_STAGE = {"--out is a file"}


@pytest.mark.parametrize(
    "name, extra, setup, code, message", CASES, ids=[case[0] for case in CASES]
)
def test_bad_input_is_one_line_and_leaves_nothing_finished(
    tmp_path, capsys, name, extra, setup, code, message
):
    shutil.copytree(SUBSET_DIR, tmp_path / "data")
    case = Case(tmp_path)
    if setup:
        setup(case)
    assert cli.main(case.argv(extra)) == code
    error = capsys.readouterr().err.splitlines()
    assert error and error[-1].startswith("dae-report: error: ") and message in error[-1], error
    assert len(error) == 1 or name in AFTER_THE_DATA_STAGE, error  # nothing else was said, or done
    assert not any("Traceback" in line for line in error)
    assert not (case.out / "latest").exists()


# Files that would block the reader forever (a FIFO waits for a writer) or never end (a device,
# a gzip bomb): each runs the CLI in a child process with a timeout, so a regression fails instead
# of hanging the suite, and with its address space capped, so it cannot take the machine's memory.
HOSTILE_FILES = [
    (
        "FIFO as a data file",
        [],
        _fifo(f"data/{IMAGES}"),
        "data file is a FIFO (named pipe), not a regular file: ",
    ),
    (
        "FIFO as --config",
        ["--config", "{tmp}/fifo.toml"],
        _fifo("fifo.toml"),
        "config file is a FIFO (named pipe), not a regular file: ",
    ),
    (
        "FIFO as the logo",
        ["--set", "report.logo={tmp}/fifo.svg"],
        _fifo("fifo.svg"),
        "report.logo is a FIFO (named pipe), not a regular file: ",
    ),
    (
        "FIFO as --compare-to",
        ["--compare-to", "{tmp}/fifo.json"],
        _fifo("fifo.json"),
        "--compare-to is a FIFO (named pipe), not a regular file: ",
    ),
    (
        "FIFO as metrics.json of a --compare-to run",
        ["--compare-to", "{tmp}/run"],
        lambda case: ((case.tmp / "run").mkdir(), _fifo("run/metrics.json")(case)),
        "--compare-to is a FIFO (named pipe), not a regular file: ",
    ),
    (
        "data file linked to /dev/zero",
        [],
        _link(f"data/{IMAGES}", "/dev/zero"),
        "data file is a character device, not a regular file: ",
    ),
    (
        "gzip bomb: 2 GB from 2 MB",
        [],
        lambda case: _gzip_bomb(case.data / IMAGES),
        f"{IMAGES} holds more than the 3136016 bytes its header (4000, 28, 28) needs",
    ),
    (
        "3 GB sparse file as a data file",
        [],
        lambda case: os.truncate(case.data / LABELS, 3 * 2**30),
        "data file is larger than ",
    ),
]
MEMORY_CAP = 2**30  # bytes of address space: the tool needs a fifth of it before training


def _cap_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


@pytest.mark.parametrize(
    "name, extra, setup, message", HOSTILE_FILES, ids=[case[0] for case in HOSTILE_FILES]
)
def test_special_and_endless_files_fail_at_once_in_one_line(tmp_path, name, extra, setup, message):
    shutil.copytree(SUBSET_DIR, tmp_path / "data")
    case = Case(tmp_path)
    setup(case)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", *case.argv(extra)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        preexec_fn=_cap_memory,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("dae-report: error: ") and message in lines[0], lines
    assert not (case.out / "latest").exists()


# Folders the tool may not read or write, and a disk that is full: real ones, in a child process.
# As root, permissions bind only without the capabilities that bypass them, so the child drops
# those (setpriv); a full disk is a 64 KiB tmpfs, filled, mounted over the output folder in a
# mount namespace of the child's own (unshare: the machine's mounts are not touched).
DAC = "-dac_override,-dac_read_search"
UNPRIVILEGED = ["setpriv", f"--inh-caps={DAC}", f"--bounding-set={DAC}"]
FULL_DISK = (  # $0: the output folder; "$@": the command. Its listing stays when the mount goes.
    'mount -t tmpfs -o size=64k tmpfs "$0" && { head -c 1M /dev/zero >"$0/.filler"; } 2>/dev/null;'
    ' "$@"; code=$?; ls -A "$0" >"$0.listing"; exit $code'
)


def _without_privileges(case) -> dict:
    if os.geteuid() != 0:
        return {}
    if not shutil.which("setpriv"):
        pytest.skip("as root, permissions bind only without CAP_DAC_OVERRIDE: needs setpriv")
    return {"prefix": UNPRIVILEGED}


def _full_disk(case) -> dict:
    case.out.mkdir()
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    probe = subprocess.run(
        [*unshare, "mount", "-t", "tmpfs", "tmpfs", str(case.out)],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace for a small tmpfs here: {probe.stderr.strip()}")
    return {"prefix": [*unshare, "sh", "-c", FULL_DISK, str(case.out)]}


def _file_size_limit(case) -> dict:
    return {"preexec_fn": lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))}


def _mode(name, mode):
    def setup(case):
        (case.tmp / name).mkdir(exist_ok=True)
        (case.tmp / name).chmod(mode)

    return setup


# (case, extra arguments, setup, how the child runs, message); all exit 2.
FILESYSTEM = [
    (
        "data folder unreadable",
        [],
        _mode("data", 0),
        _without_privileges,
        "data folder {tmp}/data cannot be read (permission denied)",
    ),
    (
        "data file unreadable",
        [],
        lambda case: (case.data / IMAGES).chmod(0),
        _without_privileges,
        f"{{tmp}}/data/{IMAGES} cannot be read (permission denied)",
    ),
    ("--out not writable", [], _mode("reports", 0o555), _without_privileges, "is not writable"),
    (
        "--out in a folder that is not writable",
        ["--out", "{tmp}/locked/reports"],
        _mode("locked", 0o555),
        _without_privileges,
        "cannot create the output folder {tmp}/locked/reports: Permission denied",
    ),
    ("disk full", [], None, _full_disk, "No space left on device"),
    ("file size limit (RLIMIT_FSIZE)", [], None, _file_size_limit, "File too large"),
]


@pytest.mark.parametrize(
    "name, extra, setup, child, message", FILESYSTEM, ids=[case[0] for case in FILESYSTEM]
)
def test_unreadable_unwritable_or_full_folders_are_one_line_exit_2(
    tmp_path, name, extra, setup, child, message
):
    shutil.copytree(SUBSET_DIR, tmp_path / "data")
    case = Case(tmp_path)
    if setup:
        setup(case)
    how = child(case)
    try:
        result = subprocess.run(
            [*how.get("prefix", []), sys.executable, "-m", "pipeline", *case.argv(extra)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=120,
            preexec_fn=how.get("preexec_fn"),
        )
    finally:
        for folder in (case.data, case.out, tmp_path / "locked"):
            if folder.is_dir():
                folder.chmod(0o755)  # pytest can remove it again
    *said, error = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert error.startswith("dae-report: error: ") and message.format(tmp=tmp_path) in error, error
    assert all(line.startswith(("[1/5] data ", "      run folder ")) for line in said), said
    # Exit 2 leaves no run folder and no latest (a full disk went with its namespace, not
    # its listing).
    listing = Path(f"{case.out}.listing")
    left = listing.read_text(encoding="utf-8").split() if listing.exists() else []
    left += [path.name for path in case.out.iterdir()] if case.out.is_dir() else []
    assert not [name for name in left if name == "latest" or name.startswith("2")], left


# What README "Exit codes" lists as bad input (code 2) and as failures during a run (code 3),
# each with the case or test here that makes it happen.
README_CASES = {
    # | 2 | bad input: ... |
    "config": "malformed TOML",
    "options": "conflicting options",
    "data files": "digest mismatch",
    "output folder": "--out not writable",
    # | 3 | failure during the run (...) |
    "a notebook cell": "test_exception_in_a_notebook_cell_exits_3_and_names_it",
    "training diverging": "test_nan_loss_fails_the_run_with_exit_3",
    "rendering": "test_weasyprint_failing_exits_3_and_keeps_latest",
    "interruption": "test_interrupted_training_resumes_from_its_last_finished_epoch",
    # Input that is not a regular file (...)
    "a FIFO": "FIFO as a data file",
    "a device": "data file is /dev/null",
    "a socket": "--config is a socket",
    "a folder": "data file is a folder",
    # a file larger than it can be (...)
    "a data file past its published size": "3 GB sparse file as a data file",
    "a gzip bomb": "gzip bomb: 2 GB from 2 MB",
    "a `--compare-to` over 16 MiB": "--compare-to: 17 MB",
    "a config over 1 MiB": "config over 1 MiB",
    "a logo over 10 MiB": "logo over 10 MiB",
}


def test_every_fault_the_readme_lists_has_a_case_and_case_names_are_unique():
    readme = (TESTS_DIR.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exit codes")[1].split("\n## ")[0]
    section = " ".join(section.split())  # its lines joined
    listed = []
    for pattern in (
        r"\| 2 \| bad input: ([^|]+?) \|",
        r"failure during the run \(([^)]+)\)",
        r"not a regular file \(([^)]+)\)",
        r"larger than it can be \(([^)]+)\)",
    ):
        (items,) = re.findall(pattern, section)
        listed += [item.strip() for item in items.split(",")]
    assert sorted(listed) == sorted(README_CASES)  # a fault the README adds needs its case here
    names = [case[0] for case in CASES + HOSTILE_FILES + FILESYSTEM]
    assert len(names) == len(set(names))
    tests = {name for name in globals() if name.startswith("test_")}
    assert {case for case in README_CASES.values() if case not in names} <= tests


# --- faults while running: in the notebook kernel, or a signal from outside ---


def _build(out: Path, *options: str, env=None) -> subprocess.Popen:
    """`dae-report build OPTIONS` on the subset (TINY without options), its stderr piped."""
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "build",
        *(options or TINY),
        "--data-dir",
        str(SUBSET_DIR),
        "--out",
        str(out),
    ]
    return subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env or os.environ.copy(),
        start_new_session=True,
        preexec_fn=interruptible,
    )


def _runs(out: Path) -> set[Path]:
    return {path.resolve() for path in out.glob("2*") if path.is_dir() and not path.is_symlink()}


def _wait_for(condition, process: subprocess.Popen | None = None, timeout=600):
    """Until `condition()` (while `process` runs)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


SITECUSTOMIZE = """\
import importlib.util, sys

class Patch:
    def find_spec(self, name, path=None, target=None):
        if name != {module!r}:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module
        def exec_module(module):
            load(module)
            exec({patch!r}, {{"module": module}})
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Patch())
"""


def _shim(tmp_path: Path, module: str, patch: str) -> dict:
    """An environment whose Pythons (the build's, its notebook kernel's) run `patch` right after
    they import `module`, with the module as `module`: a sitecustomize, loaded by every Python
    that starts with it on PYTHONPATH, wraps the module's loader to make a fault happen."""
    shim = tmp_path / "shim"
    shim.mkdir()
    code = SITECUSTOMIZE.format(module=module, patch=textwrap.dedent(patch))
    (shim / "sitecustomize.py").write_text(code, encoding="utf-8")
    return {**os.environ, "PYTHONPATH": f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _inject(tmp_path: Path) -> dict:
    """Make the kernel fail inside a notebook cell: the harness's analysis, after training."""
    return _shim(
        tmp_path,
        "pipeline.evaluate",
        """
        def broken(*args, **kwargs):
            raise RuntimeError("injected fault")
        module.noise_effect = broken
    """,
    )


def _stall_pdf(tmp_path: Path, flag: Path) -> dict:
    """Hold WeasyPrint's layout until the test interrupts it: a PDF takes seconds, too short to
    hit reliably with a signal. The flag file says the PDF stage is running."""
    return _shim(
        tmp_path,
        "weasyprint",
        f"""
        import time
        render = module.HTML.render
        def stalled(self, *args, **kwargs):
            open({str(flag)!r}, "w").close()
            time.sleep(120)
            return render(self, *args, **kwargs)
        module.HTML.render = stalled
    """,
    )


def _breaks_weasyprint(tmp_path: Path) -> dict:
    return _shim(
        tmp_path,
        "weasyprint",
        """
        def broken(self, *args, **kwargs):
            raise RuntimeError("injected WeasyPrint fault")
        module.HTML.render = broken
    """,
    )


def _hold_after_the_first_epoch(tmp_path: Path, flag: Path) -> dict:
    """Hold the kernel as its second epoch begins, the first one's checkpoint written
    (BackupAndRestore saves at each epoch's end): so the test stops the build between epochs
    whatever the machine's speed. The flag holds the kernel's pid."""
    return _shim(
        tmp_path,
        "pipeline.train",
        f"""
        import os, time
        begin = module.EpochProgress.on_epoch_begin
        def held(self, epoch, logs=None):
            if epoch == 1:
                with open({str(flag)!r} + ".new", "w") as file:
                    file.write(str(os.getpid()))
                os.replace({str(flag)!r} + ".new", {str(flag)!r})
                time.sleep(600)
            begin(self, epoch, logs)
        module.EpochProgress.on_epoch_begin = held
    """,
    )


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting for its reaper does not)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] != "Z"  # the state follows the name in brackets


def test_nan_loss_fails_the_run_with_exit_3(tmp_path):
    out = tmp_path / "reports"
    process = _build(
        out, *TINY, "--set", "model.name=residual", "--set", "training.learning_rate=1e6"
    )
    _, error = process.communicate(timeout=600)
    assert process.returncode == 3, error[-3000:]
    assert error.splitlines()[-1].startswith(
        "dae-report: error: training diverged: the loss became"
    )
    (run,) = _runs(out)
    assert "stage: notebook" in (run / "failure.log").read_text(encoding="utf-8")
    assert (run / "failure.html").is_file()
    assert not (out / "latest").exists()


def test_exception_in_a_notebook_cell_exits_3_and_names_it(tmp_path):
    out = tmp_path / "reports"
    process = _build(out, env=_inject(tmp_path))
    _, error = process.communicate(timeout=600)
    assert process.returncode == 3, error[-3000:]
    assert "failed with RuntimeError: injected fault" in error.splitlines()[-1]
    assert "Traceback" not in error
    (run,) = _runs(out)
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["status"] == "failed"
    assert not (out / "latest").exists()


def test_bad_input_found_once_the_run_started_is_a_run_failure(tmp_path):
    """Exit 2 promises no run folder: data the kernel refuses after the checks (here a DataError
    raised in the analysis) fails the run that now exists, exit 3, naming the stage."""
    out = tmp_path / "reports"
    env = _shim(
        tmp_path,
        "pipeline.evaluate",
        """
        from pipeline.errors import DataError
        def refused(*args, **kwargs):
            raise DataError("the kernel refused the data")
        module.noise_effect = refused
    """,
    )
    process = _build(out, env=env)
    _, error = process.communicate(timeout=600)
    assert process.returncode == 3, error[-3000:]
    assert (
        error.splitlines()[-1]
        == "dae-report: error: the notebook stage failed: the kernel refused the data"
    )
    (run,) = _runs(out)
    assert (run / "failure.log").read_text(encoding="utf-8").startswith("stage: notebook\n")
    assert not (out / "latest").exists()


TWO_EPOCHS = [*TINY, "--set", "training.epochs=2"]


# How a test stops a build, and the line the build ends with (None: killed, it says nothing).
STOPS = {
    "SIGINT to the build (Ctrl-C)": "interrupted",
    "SIGTERM to the build (CI, systemd, Kubernetes)": "stopped by SIGTERM",
    "SIGKILL to its process group": None,
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_interrupted_training_resumes_from_its_last_finished_epoch(tmp_path, stop):
    """README: an interrupted training (Ctrl-C, SIGTERM, killed process) resumes from its last
    finished epoch on the next build with the same config."""
    out, flag = tmp_path / "reports", tmp_path / "second-epoch"
    process = _build(out, *TWO_EPOCHS, env=_hold_after_the_first_epoch(tmp_path, flag))
    _wait_for(flag.exists, process)
    (backup,) = (out / ".cache" / "backup").iterdir()  # the resume state, epoch 1 finished
    assert json.loads((backup / "training_metadata.json").read_text(encoding="utf-8"))["epoch"] == 1
    said = STOPS[stop]
    if said is not None:  # the signal reaches the build, not the kernel (a session of its own)
        process.send_signal(getattr(signal, stop.split()[0]))
    else:
        os.killpg(process.pid, signal.SIGKILL)
    _, error = process.communicate(timeout=120)
    kernel = int(flag.read_text(encoding="utf-8"))
    _wait_for(lambda: not _alive(kernel), timeout=60)  # the kernel does not outlive its build
    (interrupted,) = _runs(out)
    record = json.loads((interrupted / "run.json").read_text(encoding="utf-8"))
    if said is not None:
        assert process.returncode == 3 and error.splitlines()[-1] == f"dae-report: {said}", error
        failure = (interrupted / "failure.log").read_text(encoding="utf-8")
        assert failure == f"stage: notebook\nerror: {said}\n"
        assert record["status"] == "failed" and record["error"]["message"] == said
        assert (interrupted / "failure.html").is_file()
    else:  # killed: nothing could be written, the run stays as it was
        assert process.returncode == -signal.SIGKILL and record["status"] == "running"
    assert not (out / "latest").exists() and not list((out / ".cache").glob("models/*"))

    again = _build(out, *TWO_EPOCHS)
    _, error = again.communicate(timeout=600)
    assert again.returncode == 0, error[-3000:]
    (resumed,) = _runs(out) - {interrupted}
    assert "resumed after epoch 1/2" in (resumed / "build.log").read_text(encoding="utf-8")
    metrics = json.loads((resumed / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["training"]["cache"]["resumed_from_epoch"] == 1
    assert len(metrics["training"]["loss"]) == 2
    assert (out / "latest").resolve() == resumed.resolve()
    assert json.loads((interrupted / "run.json").read_text(encoding="utf-8")) == record  # untouched


# --timeout: the PDF stage is reached in seconds (the notebook is reused) and held for two
# minutes, so the build times out inside it on any machine that gets there within the limit.
PDF_STOPS = {**{stop: said for stop, said in STOPS.items() if said}, "--timeout 1m": None}


@pytest.mark.parametrize("stop", list(PDF_STOPS))
def test_interrupted_pdf_leaves_no_pdf_and_latest_alone(quick_reports_copy, tmp_path, stop):
    out = quick_reports_copy
    latest = (out / "latest").resolve()
    flag = tmp_path / "pdf-started"
    options = stop.split() if stop.startswith("--") else []
    said = PDF_STOPS[stop] or "timed out after 1m (--timeout)"
    # the shared build's notebook is reused: straight to the PDF
    process = _build(out, "--profile", "quick", *options, env=_stall_pdf(tmp_path, flag))
    _wait_for(flag.exists, process)
    if not options:
        process.send_signal(getattr(signal, stop.split()[0]))
    _, error = process.communicate(timeout=120)
    assert process.returncode == 3 and error.splitlines()[-1] == f"dae-report: {said}", error
    (run,) = _runs(out) - {latest}
    assert (run / "failure.log").read_text(encoding="utf-8") == f"stage: pdf\nerror: {said}\n"
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["status"] == "failed"
    assert not (run / "report.pdf").exists() and not list(run.glob(".report.pdf.*"))
    assert (out / "latest").resolve() == latest


def test_a_build_whose_terminal_hangs_up_ends_as_ctrl_c_does(quick_reports_copy, tmp_path):
    """An SSH session to a cluster drops: the build's terminal hangs up, which sends it SIGHUP
    and fails every later write to the terminal with EIO. The build still writes failure.log and
    exits 3, where SIGHUP's default would kill it with run.json `running`, and an unhandled EIO
    would make the exit code 1, a quality regression."""
    out = quick_reports_copy
    latest = (out / "latest").resolve()
    flag = tmp_path / "pdf-started"
    env = _stall_pdf(tmp_path, flag)  # the shared build's notebook is reused: straight to the PDF
    command = [sys.executable, "-m", "pipeline", "build", "--profile", "quick"]
    command += ["--data-dir", str(SUBSET_DIR), "--out", str(out)]
    pid, terminal = pty.fork()  # the build in a session of its own, the pty its terminal
    if pid == 0:
        try:
            os.execve(sys.executable, command, env)
        finally:
            os._exit(127)
    shown = bytearray()
    deadline = time.monotonic() + 600
    while not flag.exists():  # read what the build shows, so that its writes never block
        assert os.waitpid(pid, os.WNOHANG) == (0, 0), shown.decode(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "timed out"
        if select.select([terminal], [], [], 0.05)[0]:
            shown += os.read(terminal, 65536)
    os.close(terminal)  # the hang-up
    while (ended := os.waitpid(pid, os.WNOHANG)) == (0, 0):
        assert time.monotonic() < deadline + 120, "the build outlived its terminal"
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(ended[1]) == 3, shown.decode(errors="replace")[-3000:]
    said = "stopped by SIGHUP (its terminal closed)"
    (run,) = _runs(out) - {latest}
    assert (run / "failure.log").read_text(encoding="utf-8") == f"stage: pdf\nerror: {said}\n"
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed" and record["error"]["message"] == said
    assert not (run / "report.pdf").exists()
    assert (out / "latest").resolve() == latest


def test_weasyprint_failing_exits_3_and_keeps_latest(quick_reports_copy, tmp_path):
    out = quick_reports_copy
    latest = (out / "latest").resolve()
    process = _build(out, "--profile", "quick", env=_breaks_weasyprint(tmp_path))  # notebook reused
    _, error = process.communicate(timeout=600)
    assert process.returncode == 3, error[-3000:]
    line = error.splitlines()[-1]
    assert (
        line == "dae-report: error: the pdf stage failed: "
        "RuntimeError: injected WeasyPrint fault (--debug shows the traceback)"
    ), error
    assert "Traceback" not in error
    (run,) = _runs(out) - {latest}
    assert (run / "failure.log").read_text(encoding="utf-8").startswith("stage: pdf\n")
    assert (run / "failure.html").is_file()
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed" and record["error"]["stage"] == "pdf"
    assert not (run / "report.pdf").exists() and not list(run.glob(".report.pdf.*"))
    assert (out / "latest").resolve() == latest
