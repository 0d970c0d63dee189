"""A build's summary on its GitHub Actions run page.

GitHub Actions names a file in $GITHUB_STEP_SUMMARY and shows the Markdown a step appends there
on the workflow run's page. After a build, `append` writes a few lines there: the run, its
status (with the stage and error of a failed run), the headline metrics against the run it was
compared with (pipeline.diff's table: one renderer for both), the gate's verdict, the config keys
that changed when the compared run is beside it, and the name of the artifact holding the report
($DAE_REPORT_ARTIFACT, set by the workflow). Outside Actions it writes nothing.

A summary is a courtesy: whatever goes wrong writing it is one warning line, never a change to
the build's exit code.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from pipeline import artifacts, diff, gate
from pipeline.config import differences
from pipeline.errors import BadInput, DaeReportError
from pipeline.progress import terminal

SUMMARY_ENV = "GITHUB_STEP_SUMMARY"  # set by GitHub Actions for each step
ARTIFACT_ENV = "DAE_REPORT_ARTIFACT"  # set by .github/workflows/report.yml on the build step
# GitHub takes at most 1 MiB per step and drops the whole summary past it; one build's says what
# a screen holds. A class set (`batch`) appends one per variant: 8 KiB each leaves room for 100.
MAX_BYTES = 8 * 2**10
ERROR_MAX_CHARS = 1000  # a traceback-sized message: its head says what failed
CONFIG_ROWS = 10  # the keys that changed; config.json in the artifact has them all


def append(run_dir: Path, stream=None) -> None:
    """Append the run's summary to the file named by $GITHUB_STEP_SUMMARY; nothing when it is
    unset. Never raises: a problem is one `warning:` line on `stream` (default stderr)."""
    target = os.environ.get(SUMMARY_ENV)
    if not target:
        return
    try:
        text = markdown(Path(run_dir), os.environ.get(ARTIFACT_ENV))
        _append(Path(target), text)
    except Exception as error:  # a summary must never turn a build's exit code into another
        _warn(stream, f"warning: GitHub step summary not written ({_reason(error)})")


def markdown(run_dir: Path, artifact: str | None = None) -> str:
    """The summary of the run in `run_dir` (its run.json, metrics.json's comparison), at most
    MAX_BYTES of UTF-8 with the newline that ends it."""
    record = diff.read_object(run_dir / artifacts.RUN_RECORD, diff.RECORD_MAX_BYTES)
    metrics = _optional_object(run_dir / artifacts.METRICS, gate.METRICS_MAX_BYTES)
    comparison = metrics.get("comparison") if metrics else None
    sections = [_header(run_dir, record, comparison, artifact)]
    error = record.get("error") if isinstance(record.get("error"), dict) else None
    if record.get("status") == "failed" and error and error.get("message"):
        sections.append(diff.fenced(_cut(str(error["message"]), ERROR_MAX_CHARS)))
    if comparison:
        sections.append(
            f"#### Headline metrics against {diff.code(comparison['baseline'])}\n\n"
            + diff.metrics_markdown(comparison, "before", "this run")
        )
        changes = _config_changes(run_dir, comparison["baseline"])
        if changes is not None:
            sections.append(diff.config_markdown(changes, "before", "this run", CONFIG_ROWS))
    return fit(sections, MAX_BYTES - 1)  # 1: the blank line `_append` may put before it


def _header(run_dir: Path, record: dict, comparison: dict | None, artifact: str | None) -> str:
    run_id = record.get("run_id") if isinstance(record.get("run_id"), str) else run_dir.name
    state = diff.outcome(record)
    lines = [
        f"### dae-report build {diff.code(run_id)}: {diff.markdown_text(state)}",
        "",
        f"- **profile:** {diff.code(str(record.get('profile') or '?'))}",
        f"- **gate:** {_gate(comparison, record.get('status'))}",
    ]
    if artifact and artifact.strip():
        lines.append(f"- **artifact:** {diff.code(artifact.strip())}")
    return "\n".join(lines)


def _gate(comparison: dict | None, status) -> str:
    if comparison:
        return diff.gate_markdown(comparison)
    if status == "finished":
        return "no earlier run to compare with"
    return "not reached" if status == "failed" else "not reached yet"


def _config_changes(run_dir: Path, baseline: str) -> list[dict] | None:
    """The config keys that differ from the compared run, when that run is a folder beside this
    one (the default baseline is; a --compare-to elsewhere, or one pruned since, is not):
    None when it cannot be found or read."""
    if not isinstance(baseline, str) or Path(baseline).name != baseline or baseline in ("", ".."):
        return None
    try:
        before = diff.read_object(
            run_dir.parent / baseline / artifacts.CONFIG, diff.RECORD_MAX_BYTES
        )
        now = diff.read_object(run_dir / artifacts.CONFIG, diff.RECORD_MAX_BYTES)
    except BadInput:
        return None
    return [{"key": key, "a": a, "b": b} for key, (a, b) in differences(before, now).items()]


def _optional_object(path: Path, max_bytes: int) -> dict | None:
    """A run file that a failed run may lack: None when it is not there."""
    return diff.read_object(path, max_bytes) if path.exists() else None


def fit(sections: list[str], max_bytes: int) -> str:
    """`sections` in order, blank lines between, as many as fit in `max_bytes` of UTF-8; one
    line says what was left out. The first is cut to fit if it must be."""
    note = "\n\n*… cut here: a step summary is kept short; the run folder has everything.*\n"
    room = max_bytes - len(note.encode("utf-8"))
    text = _cut_bytes(sections[0], room)
    for section in sections[1:]:
        candidate = f"{text}\n\n{section}"
        if len(candidate.encode("utf-8")) > room:
            return text + note
        text = candidate
    return _cut_bytes(text + "\n", max_bytes)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (cut)"


def _cut_bytes(text: str, limit: int) -> str:
    """`text` cut to `limit` bytes of UTF-8, never inside a character."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _append(path: Path, text: str) -> None:
    """Append `text` to `path`, a regular file (created if missing). O_NONBLOCK: a FIFO with no
    reader fails at once instead of blocking the build's end."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    descriptor = os.open(path, flags, 0o666)
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(f"{diff.printable(path)} is not a regular file")
        # A blank line parts it from what the step wrote before (Markdown runs lines together).
        data = ("\n" if status.st_size else "").encode("utf-8") + text.encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
    finally:
        os.close(descriptor)


def _reason(error: Exception) -> str:
    if isinstance(error, OSError) and error.strerror:
        reason = f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    elif isinstance(error, (OSError, DaeReportError)):
        reason = str(error)
    else:
        reason = f"{type(error).__name__}: {error}"
    return diff.printable(" ".join(reason.split()))[:300]


def _warn(stream, line: str) -> None:
    try:
        output = terminal(stream)
        output.write(line + "\n")
        output.flush()
    except Exception:  # stderr itself is gone: there is no one left to tell
        pass
