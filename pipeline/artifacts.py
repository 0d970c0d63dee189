"""What a run folder holds, named once; the JSON files' reading and writing; and the one way
the tool opens a file the user names (regular files only, of a bounded size)."""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

PACKAGE_DIR = Path(__file__).resolve().parent
# The package data `pipeline.templates`: the repository's templates/ folder (pyproject.toml maps
# it), pipeline/templates/ in a wheel. Jinja2, WeasyPrint and papermill need a real folder, which
# an installed package is.
TEMPLATES_DIR = Path(str(resources.files("pipeline.templates"))).resolve()
LAB_NOTEBOOK = TEMPLATES_DIR / "lab.ipynb"

# Inside reports/<run-id>/
REPORT_HTML = "report.html"
REPORT_PDF = "report.pdf"
ANSWER_KEY = "answer-key.ipynb"
HANDOUT_NOTEBOOK = "handout.ipynb"  # the student's version: no solutions, no outputs
HANDOUT_PDF = "handout.pdf"
NBGRADER_SOURCE = "nbgrader-source.ipynb"  # the lab with nbgrader's solution and test regions
METRICS = "metrics.json"
CONFIG = "config.json"
MODEL = "model.keras"
FIGURES = "figures"
BUILD_LOG = "build.log"  # stages and epochs, as the terminal showed them
KERNEL_LOG = "kernel.log"  # TensorFlow's stderr: the kernel's (build), the process's (compare)
FAILURE_LOG = "failure.log"
FAILURE_HTML = "failure.html"
RUN_RECORD = "run.json"  # status, stage times, provenance: what a scheduler reads
LATEST = "latest"  # reports/latest -> the newest finished run


_UMASK = os.umask(0)
os.umask(_UMASK)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: readers see the old file or the new one, never half of one."""
    text = json.dumps(_plain(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    write_text(Path(path), text)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --- Reading what the user names (data files, config, logo, --compare-to) ---

_NOT_REGULAR = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),  # opening it waits for a writer: forever
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),  # /dev/zero never ends
    (stat.S_ISBLK, "a block device"),
)


def open_regular(path: Path, what: str, error: type[Exception], max_bytes: int) -> BinaryIO:
    """`path` opened for reading, if it is a regular file (after links) of at most `max_bytes`.

    Anything else would block the reader (a FIFO), never end (a device) or fill the memory (a
    huge file), so it is `error`, naming `what` ("config file", "report.logo") and the path:
    'config file is a FIFO (named pipe), not a regular file: /path'. A missing or unreadable
    file raises the usual OSError, for the caller to word."""
    path = Path(path)
    _require_regular(os.stat(path), path, what, error, max_bytes)  # follows links
    # O_NONBLOCK: should the path have become a FIFO since the stat, opening it still returns;
    # fstat then checks the file actually opened. (It changes nothing for a regular file.)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _require_regular(os.fstat(descriptor), path, what, error, max_bytes)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular(path: Path, what: str, error: type[Exception], max_bytes: int) -> bytes:
    """The whole of `path`, checked as open_regular checks it; a file that grows past
    `max_bytes` while it is read is refused too (nothing past max_bytes + 1 is read)."""
    with open_regular(path, what, error, max_bytes) as file:
        content = file.read(max_bytes + 1)
    if len(content) > max_bytes:
        raise error(f"{what} is larger than {_size(max_bytes)}: {path}")
    return content


def _require_regular(
    status: os.stat_result, path: Path, what: str, error: type[Exception], max_bytes: int
) -> None:
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _NOT_REGULAR if test(status.st_mode)), "something else")
        raise error(f"{what} is {kind}, not a regular file: {path}")
    if status.st_size > max_bytes:
        raise error(f"{what} is larger than {_size(max_bytes)}: {path}")


def _size(count: int) -> str:
    return f"{count >> 20} MiB" if count % 2**20 == 0 else f"{count} bytes"


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename: a reader (or an interrupted build) never
    leaves a half-written file under the real name. A full or read-only disk is an
    OutputError naming the file."""
    from pipeline.errors import OutputError

    path = Path(path)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with open(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        os.replace(temporary, path)
    except OSError as error:
        _discard(temporary)
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        _discard(temporary)
        raise


def _discard(temporary: str | None) -> None:
    if temporary is not None:
        try:
            Path(temporary).unlink(missing_ok=True)
        except OSError:
            pass


def _plain(value: Any) -> Any:
    """NumPy scalars and arrays, tuples and paths to JSON types; NaN becomes null."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalar or array
        return _plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
