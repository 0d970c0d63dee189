"""pipeline/artifacts.py: atomic writes (a reader or a failed write never leaves half a file, nor a
temporary one), JSON as plain types, and open_regular/read_regular, the one way a file the user
names is opened: regular files only, of a bounded size."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts
from pipeline.errors import OutputError


class Refused(Exception):
    """The caller's error class: open_regular raises what it is given."""


def run_python(script: str, *arguments: str) -> subprocess.CompletedProcess:
    """`script` in a fresh interpreter (its own umask or resource limits), this checkout first."""
    result = subprocess.run(
        [sys.executable, "-c", script, *arguments],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


# --- Atomic writes ---


def test_write_bytes_replaces_the_whole_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_bytes(b"old content that is longer than the new one")
    artifacts.write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]


# The file grows past RLIMIT_FSIZE in the middle of the write: write() fails with EFBIG after
# 64 KiB of the 1 MiB reached the disk (Python ignores SIGXFSZ, so the call fails, not the process).
WRITE_PAST_THE_SIZE_LIMIT = """
import resource, signal, sys
from pathlib import Path
from pipeline import artifacts
from pipeline.errors import OutputError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
try:
    artifacts.write_bytes(Path(sys.argv[1]), b"x" * 2**20)
except OutputError as error:
    print(error)
else:
    print("written")
"""


@pytest.mark.parametrize(
    "existing", [b'{"old": true}\n', None], ids=["over an old file", "new file"]
)
def test_a_write_that_fails_midway_leaves_no_partial_file_and_no_temporary(tmp_path, existing):
    target = tmp_path / "model.keras"
    if existing is not None:
        target.write_bytes(existing)
    result = run_python(WRITE_PAST_THE_SIZE_LIMIT, str(target))
    assert result.stdout.strip() == f"cannot write {target}: File too large"
    assert sorted(os.listdir(tmp_path)) == (
        [] if existing is None else ["model.keras"]
    )  # no .model.keras.*
    if existing is not None:
        assert target.read_bytes() == existing  # readers still see the old file, whole


def test_a_folder_that_cannot_hold_the_file_is_an_output_error_naming_it(tmp_path):
    (tmp_path / "not-a-folder").write_text("", encoding="utf-8")
    target = tmp_path / "not-a-folder" / "run.json"
    with pytest.raises(OutputError, match=f"^cannot write {target}: Not a directory$"):
        artifacts.write_text(target, "{}")


def test_written_files_get_the_users_umask_not_mkstemps_private_mode(tmp_path):
    script = (
        "import os, sys\nfrom pathlib import Path\nos.umask(0o027)\n"
        "from pipeline import artifacts\nartifacts.write_text(Path(sys.argv[1]), 'x')\n"
    )
    run_python(script, str(tmp_path / "report.html"))
    assert (tmp_path / "report.html").stat().st_mode & 0o777 == 0o640


def test_write_json_writes_plain_utf8_json_and_reads_it_back(tmp_path):
    target = tmp_path / "metrics.json"
    artifacts.write_json(
        target,
        {
            "mse": np.float32(0.5),
            "per_class": np.array([1, 2]),
            "shape": (28, 28),
            "path": Path("figures/a.svg"),
            "nan": float("nan"),
            "inf": float("-inf"),
            "clase": "Camiseta/top · señal",
            3: "key made text",
        },
    )
    raw = target.read_bytes()
    assert raw.endswith(b"}\n") and "señal".encode() in raw  # not \u00f1
    assert (
        artifacts.read_json(target)
        == json.loads(raw.decode("utf-8"))
        == {
            "mse": 0.5,
            "per_class": [1, 2],
            "shape": [28, 28],
            "path": "figures/a.svg",
            "nan": None,
            "inf": None,
            "clase": "Camiseta/top · señal",
            "3": "key made text",
        }
    )


# --- open_regular / read_regular ---


def make_fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe")
    return folder / "pipe"


def make_socket(folder: Path) -> Path:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "socket"))
    server.close()  # the socket file stays
    return folder / "socket"


def make_directory(folder: Path) -> Path:
    (folder / "folder.toml").mkdir()
    return folder / "folder.toml"


def make_link_to_fifo(folder: Path) -> Path:
    (folder / "link.toml").symlink_to(make_fifo(folder))
    return folder / "link.toml"


@pytest.mark.parametrize(
    "make, kind",
    [
        (make_directory, "a directory"),
        (make_fifo, "a FIFO (named pipe)"),
        (make_socket, "a socket"),
        (lambda folder: Path("/dev/zero"), "a character device"),
        (make_link_to_fifo, "a FIFO (named pipe)"),  # links are followed, then checked
    ],
    ids=["directory", "fifo", "socket", "device", "link to a fifo"],
)
@pytest.mark.parametrize("reader", [artifacts.open_regular, artifacts.read_regular])
def test_what_is_not_a_regular_file_is_refused_in_one_line(tmp_path, make, kind, reader):
    path = make(tmp_path)
    with pytest.raises(Refused) as refused:
        reader(path, "config file", Refused, 2**20)
    assert str(refused.value) == f"config file is {kind}, not a regular file: {path}"


@pytest.mark.parametrize("max_bytes, limit", [(100, "100 bytes"), (2**20, "1 MiB")])
def test_a_file_over_the_limit_is_refused_and_one_at_it_is_read(tmp_path, max_bytes, limit):
    exact, over = tmp_path / "exact.json", tmp_path / "over.json"
    exact.write_bytes(b"a" * max_bytes)
    over.write_bytes(b"a" * (max_bytes + 1))
    assert artifacts.read_regular(exact, "--compare-to", Refused, max_bytes) == b"a" * max_bytes
    with artifacts.open_regular(exact, "--compare-to", Refused, max_bytes) as file:
        assert file.read() == b"a" * max_bytes
    for reader in (artifacts.open_regular, artifacts.read_regular):
        with pytest.raises(Refused, match=f"^--compare-to is larger than {limit}: {over}$"):
            reader(over, "--compare-to", Refused, max_bytes)


def test_a_link_to_a_regular_file_is_read(tmp_path):
    (tmp_path / "logo.svg").write_bytes(b"<svg/>")
    (tmp_path / "link.svg").symlink_to(tmp_path / "logo.svg")
    assert artifacts.read_regular(tmp_path / "link.svg", "report.logo", Refused, 100) == b"<svg/>"


def test_a_file_larger_than_its_size_said_is_refused_once_read():
    """/proc files are regular and report size 0, but hold more: what a file that grows while it is
    read looks like. read_regular stops at max_bytes + 1 and refuses it."""
    status = Path("/proc/self/status")
    if not status.is_file():
        pytest.skip("needs Linux /proc")
    assert status.stat().st_size == 0
    assert b"VmRSS" in artifacts.read_regular(status, "data file", Refused, 2**20)
    with pytest.raises(Refused, match=f"^data file is larger than 16 bytes: {status}$"):
        artifacts.read_regular(status, "data file", Refused, 16)


def test_a_missing_file_is_the_usual_os_error_for_the_caller_to_word(tmp_path):
    with pytest.raises(FileNotFoundError):
        artifacts.read_regular(tmp_path / "missing.toml", "config file", Refused, 100)
