"""What a run folder holds, named once, and the JSON files' reading and writing."""

from __future__ import annotations

import json
import math
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

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
METRICS = "metrics.json"
CONFIG = "config.json"
MODEL = "model.keras"
FIGURES = "figures"
BUILD_LOG = "build.log"  # stages and epochs, as the terminal showed them
KERNEL_LOG = "kernel.log"  # the notebook kernel's stderr
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
