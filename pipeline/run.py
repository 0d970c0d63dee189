"""One run of a command (`build`, `compare`), from its first stage to its end.

Each run gets its own folder, reports/<run-id>/, with run.json saying how far it got: the
command, its status (`running`, `finished`, `failed`), each stage's times, versions and commit.
A run that fails keeps failure.log and failure.html naming the stage and the error; only a
finished build becomes reports/latest. `Run` holds the lifecycle; the functions below it are its
parts (run folder, stages on the terminal, run.json, `latest`, the failed ending).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from pipeline import artifacts, environment, glyphs, provenance, report, stops
from pipeline.config import Config
from pipeline.errors import DaeReportError, OutputError, RunError
from pipeline.progress import format_duration, terminal


class Run:
    """One run, start to end:

    run = Run("build", config, out_dir, stream, stage_count=5)
    with run.stages.run("data"):                # checks that need no run folder yet
        ...
    with run.open(config.profile) as run_dir:   # reports/<run-id>/, run.json, config.json
        with run.stages.run("notebook"):        # any exception ends the run as failed
            ...
    run.finish(latest=True)                     # run.json finished, latest, `done in`
    """

    def __init__(
        self, command: str, config: Config, out_dir: Path, stream=None, *, stage_count: int
    ) -> None:
        self.command, self.config = command, config
        self.stream = terminal(stream)  # a closed pipe (`| head`) drops progress, not the run
        self.out_dir = Path(out_dir).absolute()  # papermill runs the kernel inside the run folder
        self.started = datetime.now().astimezone()
        self.stages = Stages(self.stream, total=stage_count)
        self.folder: Path | None = None
        self.record: RunRecord | None = None

    @contextmanager
    def open(
        self, name: str, *, warnings: Sequence[str] = (), show_folder: bool = False
    ) -> Iterator[Path]:
        """The run folder reports/<YYYYmmdd-HHMMSS>-<name>, with run.json and config.json.

        `warnings` (said on the terminal before the folder existed) go into run.json and
        build.log. Any exception inside the `with` ends the run as the exit codes promise
        (end_failed_run): failure.log, failure.html, run.json `failed`, and exit 3."""
        self.folder = create_run_dir(self.out_dir, self.started, name)
        if show_folder:
            self.stream.write(f"      run folder {self.folder}\n")
        try:
            self.record = RunRecord(
                self.folder, self.config, self.started, self.stages, self.command
            )
            if warnings:  # run.json and build.log keep what the terminal said before the folder
                self.record.values["warnings"] = list(warnings)
                with (self.folder / artifacts.BUILD_LOG).open("a", encoding="utf-8") as log:
                    log.writelines(f"warning: {warning}\n" for warning in warnings)
            artifacts.write_json(self.folder / artifacts.CONFIG, self.config.to_dict())
            yield self.folder
        except BaseException as error:
            lang = self.config.report.lang
            end_failed_run(self.folder, self.record, self.stages.current, error, lang)

    def finish(self, *, latest: bool = False, **values) -> float:
        """run.json says `finished` (with `values`); with `latest`, reports/latest points at
        this run. Says `done in …` and returns the run's seconds."""
        self.record.finish("finished", **values)
        if latest:
            note = mark_latest(self.folder)
            if note:
                self.stream.write(f"      {note}\n")
        seconds = time.perf_counter() - self.stages.clock
        self.stream.write(f"done in {format_duration(seconds)}: {self.folder}\n")
        return seconds


class RunRecord:
    """run.json: how far the run got, each stage's times, and where the run came from."""

    def __init__(
        self,
        run_dir: Path,
        config: Config,
        started: datetime,
        stages: Stages,
        command: str = "build",
    ) -> None:
        self.run_dir, self.config, self.started, self.stages = run_dir, config, started, stages
        self.notebook: dict | None = None
        self.values = {
            "run_id": run_dir.name,
            "command": command,  # only a finished `build` is a later build's default baseline
            "profile": config.profile,
            "status": "running",
            "pid": os.getpid(),
            "started": started.isoformat(timespec="seconds"),
            "versions": provenance.versions(),
            "git": provenance.git_commit(),
        }
        stages.on_change = self._write  # a scheduler (or a person) can watch the run progress
        self._write()

    def as_dict(self) -> dict:
        return {**self.values, "stages": self.stages.times, "notebook": self.notebook}

    def finish(self, status: str, error: BaseException | None = None, **values) -> None:
        self.values.update(
            status=status,
            finished=datetime.now().astimezone().isoformat(timespec="seconds"),
            **values,
        )
        if error is not None:
            self.values["error"] = {"stage": self.stages.current, "message": error_message(error)}
        self._write()

    def _write(self) -> None:
        try:
            artifacts.write_json(self.run_dir / artifacts.RUN_RECORD, self.as_dict())
        except OutputError:
            if self.values["status"] != "failed":  # a failed run on a full disk keeps its error
                raise


def cover_warnings(config: Config, warn) -> list[str]:
    """Says, in one line, which characters of the cover's text no installed font can draw
    (they would print as blank boxes); returns the lines said, for run.json."""
    warning = glyphs.cover_warning(config.to_dict()["report"])
    if warning is None:
        return []
    warn(f"warning: {warning}")
    return [warning]


class Stages:
    """Prints `[n/total] name  detail  (seconds)` for each stage; remembers which one runs and
    when each started and ended."""

    def __init__(self, stream, total: int) -> None:
        self.stream, self.total, self.count, self.current = stream, total, 0, None
        self.clock = time.perf_counter()
        self.times: dict[str, dict] = {}
        self.on_change = lambda: None  # RunRecord rewrites run.json when a stage starts or ends

    def run(self, name: str, announce: str = "") -> Stage:
        self.count += 1
        self.current = name
        return Stage(self, name, announce)

    def warn(self, message: str) -> None:
        """One line inside the running stage, indented like the notebook's progress lines."""
        self.stream.write(f"      {message}\n")
        self.stream.flush()


class Stage:
    """One stage as a `with` block: its line on the terminal, its times in run.json. Set
    `detail` inside the block for what the line says after the stage's name."""

    def __init__(self, stages: Stages, name: str, announce: str) -> None:
        self.stages, self.name, self.announce, self.detail = stages, name, announce, ""
        self.label = f"[{stages.count}/{stages.total}] {name:<8} "

    def __enter__(self) -> Stage:
        environment.reset_peak_rss()  # this stage's peak memory, not the run's so far
        self.started = time.perf_counter()
        self.stages.times[self.name] = {"started": _now()}
        self.stages.on_change()
        if self.announce:  # a long stage says what it does before it starts
            self.stages.stream.write(f"{self.label}{self.announce}\n")
            self.stages.stream.flush()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        seconds = time.perf_counter() - self.started
        self.stages.times[self.name].update(
            ended=_now(), seconds=round(seconds, 3), peak_rss_bytes=environment.peak_rss()
        )
        self.stages.on_change()
        if kind is None:
            detail = self.detail or ("done" if self.announce else "")
            self.stages.stream.write(f"{self.label}{detail}  ({seconds:.1f} s)\n")
            self.stages.stream.flush()


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def prepare_out_dir(out_dir: Path) -> Path:
    """The output folder, created if needed; a file or an unwritable folder is bad input."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output folder {out_dir}: {error.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {out_dir} is not writable")
    return out_dir


def create_run_dir(out_dir: Path, started: datetime, name: str) -> Path:
    """reports/<YYYYmmdd-HHMMSS>-<name>[-n]: a new folder, never an earlier run's. `name` is
    the profile of a build, `compare` for a comparison."""
    prepare_out_dir(out_dir)
    stem = f"{started:%Y%m%d-%H%M%S}-{name}"
    for attempt in range(1, 1000):
        run_dir = out_dir / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            run_dir.mkdir()  # atomic: two builds started together get two folders
        except FileExistsError:
            continue
        except OSError as error:
            raise OutputError(f"cannot create {run_dir}: {error.strerror}") from None
        return run_dir
    raise OutputError(f"too many runs named {stem} in {out_dir}")


RUN_NAME = re.compile(r"\d{8}-\d{6}-[a-z]+(-\d+)?")  # create_run_dir's names


def check_latest(out_dir: Path) -> dict | None:
    """Whether reports/latest may be pointed at a new run: a link (or nothing) may. So may a
    real folder that is a copy of a finished run, what restoring a CI artifact leaves (artifacts
    drop links): its run.json is returned. Anything else is the user's, and an OutputError."""
    link = Path(out_dir) / artifacts.LATEST
    if link.is_symlink() or not os.path.lexists(link):
        return None
    record = _finished_record(link) if link.is_dir() else None
    if record is None:
        kind = "folder" if link.is_dir() else "file"
        raise OutputError(
            f"{link} is a {kind}, not a link to a run nor a copy of a finished one: move it "
            "away (a build points latest at its run)"
        )
    return record


def _finished_record(folder: Path) -> dict | None:
    path = folder / artifacts.RUN_RECORD
    if not path.is_file():  # no run.json, or a FIFO that would block the read
        return None
    try:
        record = artifacts.read_json(path)
    except (OSError, ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) and record.get("status") == "finished" else None


def mark_latest(run_dir: Path) -> str | None:
    """Point reports/latest at `run_dir`, atomically (a new link replaces the old one).

    A copy of an earlier run in its place (check_latest) is moved to that run's own name if it
    is free, else removed (the run is here already); the line returned says which. No
    temporary link is left behind, whatever fails.
    """
    out_dir, link = run_dir.parent, run_dir.parent / artifacts.LATEST
    copy = check_latest(out_dir)  # again: it may have changed while the run ran
    temporary = out_dir / f".{artifacts.LATEST}.{os.getpid()}"
    aside = out_dir / f".{artifacts.LATEST}.{os.getpid()}.copy" if copy is not None else None
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(run_dir.name, target_is_directory=True)
        if aside is not None:
            os.rename(link, aside)
        os.replace(temporary, link)
    except OSError as error:
        if aside is not None and os.path.lexists(aside) and not os.path.lexists(link):
            with suppress(OSError):
                os.rename(aside, link)  # the copy goes back where it was
        reason = error.strerror or error
        raise OutputError(f"cannot point {link} at {run_dir.name}: {reason}") from None
    finally:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
    if copy is None:
        return None
    return _put_copy_away(copy, aside, run_dir)


def _put_copy_away(copy: dict, aside: Path, run_dir: Path) -> str:
    """The copy that was in latest's place, moved aside by mark_latest, kept under its run's
    name if that is free, else removed; returns the line that says which."""
    out_dir = run_dir.parent
    name = copy.get("run_id")
    name = name if isinstance(name, str) and RUN_NAME.fullmatch(name) else None
    was = f"latest was a copy of {f'run {name}' if name else 'a finished run'}, not a link"
    now = f"latest → {run_dir.name}"
    if name is not None and not os.path.lexists(out_dir / name):
        try:
            os.rename(aside, out_dir / name)
            return f"{was}: kept as {name}/; {now}"
        except OSError:
            pass
    shutil.rmtree(aside, ignore_errors=True)
    if name is not None and (out_dir / name).is_dir():
        return f"{was}: removed ({name}/ is here); {now}"
    return f"{was}: removed; {now}"


def error_message(error: BaseException) -> str:
    """The error in one line, as failure.log, run.json and the terminal give it."""
    if isinstance(error, KeyboardInterrupt):  # Ctrl-C, SIGTERM or --timeout (pipeline.stops)
        return stops.message(error)
    if isinstance(error, DaeReportError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def end_failed_run(
    run_dir: Path, record: RunRecord | None, stage: str | None, error: BaseException, lang: str
) -> NoReturn:
    """Leave a failed run as the exit codes promise, then raise: called in an `except` block.

    Before run.json exists (a full disk, a folder that turned read-only) there is no run: its
    folder goes, so exit 2 leaves none. Otherwise failure.log, failure.html and run.json say which
    stage failed, and the error becomes a RunError (exit 3) whose one line names the stage when
    it is bad input (2 promises no run folder) or not ours (a WeasyPrint or Keras exception)."""
    if record is None:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise error
    write_failure(run_dir, stage, error, lang)
    record.finish("failed", error=error)
    if isinstance(error, DaeReportError) and error.exit_code == 2:
        # Bad input found only once the run had started (a disk that filled up, data the kernel
        # refused): a run folder exists now, so it is a failure during the run.
        raise RunError(f"the {stage} stage failed: {error}") from error
    if isinstance(error, Exception) and not isinstance(error, DaeReportError):
        message = f"the {stage} stage failed: {error_message(error)} (--debug shows the traceback)"
        raise RunError(message) from error
    raise error


def write_failure(run_dir: Path, stage: str | None, error: BaseException, lang: str) -> None:
    """failure.log for machines, failure.html for people; never raises over the real error."""
    message = error_message(error)
    try:
        artifacts.write_text(run_dir / artifacts.FAILURE_LOG, f"stage: {stage}\nerror: {message}\n")
        log = run_dir / artifacts.BUILD_LOG
        tail = log.read_text(encoding="utf-8").splitlines()[-20:] if log.is_file() else []
        html = report.render_failure(run_dir.name, stage, message, tail, lang)
        artifacts.write_text(run_dir / artifacts.FAILURE_HTML, html)
    except Exception:  # e.g. the disk is full: the exit code and the message still tell
        pass
