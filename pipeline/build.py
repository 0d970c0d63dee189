"""`dae-report build`: data check → lab notebook → comparison → HTML → PDF → reports/latest.

Each run gets its own folder, reports/<run-id>/, with run.json saying how far it got. Only a
run that finished every stage becomes reports/latest; a failed one keeps failure.log and
failure.html naming the stage and the error.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NoReturn

import nbformat

from pipeline import artifacts, cache, data, gate, glyphs, notebook, provenance, report
from pipeline.config import Config
from pipeline.errors import DaeReportError, OutputError, QualityRegression, RunError
from pipeline.progress import format_duration, terminal


@dataclass(frozen=True)
class BuildResult:
    run_dir: Path
    pages: int
    seconds: float
    regressions: list[str]


def build(
    *,
    config: Config,
    out_dir: Path,
    data_dir: Path | None = None,
    handout: bool = False,
    retrain: bool = False,
    compare_to: str | Path | None = None,
    stream=None,
) -> BuildResult:
    """Train (or reuse), evaluate and report one run of the lab with `config`.

    With `handout`, the run folder also gets the student handout. `compare_to` is a run folder
    or metrics.json to compare with; by default the newest finished build of the same profile
    that passed its gate. A regression past `quality.max_regression` still writes the whole
    report, then raises QualityRegression (exit code 1).
    """
    stream = terminal(stream)  # a closed pipe (`| head`) drops progress, not the run
    out_dir = Path(out_dir).absolute()  # papermill runs the kernel inside the run folder
    started = datetime.now().astimezone()
    stages = Stages(stream, total=6 if handout else 5)
    baseline = gate.load_baseline(compare_to) if compare_to is not None else None
    check_latest(out_dir)  # a `latest` that is not ours to replace fails now, not after the run
    warnings = cover_warnings(config, stages.warn)  # said before the work, not found in the PDF

    with stages.run("data") as stage:
        folder = data.locate(data_dir)
        dataset = data.load(folder)
        # Limits are checked against the real data before anything is written.
        train_images, _ = data.limit(
            dataset.train_images, dataset.train_labels, config.data.train_limit, "train"
        )
        data.limit(dataset.test_images, dataset.test_labels, config.data.test_limit, "test")
        data.validation_size(len(train_images), config.split.val_fraction)
        del train_images
        data.require_every_class(dataset.test_labels, config.data.test_limit, "test")
        digests = dataset.digests
        dataset_summary = {
            "source": str(folder),
            "digests": digests,
            "available": {"train": len(dataset.train_images), "test": len(dataset.test_images)},
        }
        stage.detail = f"{folder} (verified)"
        del dataset  # the kernel loads its own copy; this process needs no 50 MB of images

    run_dir = create_run_dir(out_dir, started, config.profile)
    stream.write(f"      run folder {run_dir}\n")
    cache_root = out_dir / cache.CACHE_DIR
    record = None
    try:
        record = RunRecord(run_dir, config, started, stages)
        if warnings:  # run.json and build.log keep what the terminal said before the run folder
            record.values["warnings"] = warnings
            with open(run_dir / artifacts.BUILD_LOG, "a", encoding="utf-8") as log:
                log.writelines(f"warning: {warning}\n" for warning in warnings)
        artifacts.write_json(run_dir / artifacts.CONFIG, config.to_dict())
        training_inputs = cache.training_inputs(
            config.to_dict(), digests, notebook.training_code(config)
        )
        notebook_key = cache.digest(cache.notebook_inputs(training_inputs, config.to_dict()))[:16]
        with stages.run("notebook", "the lab, executed by papermill → answer-key.ipynb") as stage:
            # An earlier run's outputs, each checked against its digest as it is copied; a
            # damaged entry is discarded with one line, and the notebook runs again.
            earlier = (
                None
                if retrain
                else cache.reuse_notebook(cache_root, notebook_key, run_dir, warn=stages.warn)
            )
            if earlier is not None:
                stage.detail = f"reused {earlier.name}'s outputs: nothing the notebook uses changed"
            else:
                run_notebook(
                    run_dir, config, dataset_summary, training_inputs, cache_root, retrain, stream
                )
        record.notebook = {"key": notebook_key, "reused_from": earlier.name if earlier else None}

        with stages.run("compare") as stage:
            metrics = artifacts.read_json(run_dir / artifacts.METRICS)
            if baseline is None:
                baseline = gate.default_baseline(out_dir, config.profile, exclude=run_dir)
            metrics["comparison"] = (
                gate.compare(metrics, baseline[0], config.quality.max_regression, baseline[1])
                if baseline is not None
                else None
            )
            artifacts.write_json(run_dir / artifacts.METRICS, metrics)
            metrics["content_digest"] = provenance.content_digest(run_dir)
            artifacts.write_json(run_dir / artifacts.METRICS, metrics)
            comparison = metrics["comparison"]
            stage.detail = (
                f"with {comparison['baseline']}: "
                + (
                    f"regressed: {', '.join(comparison['regressions'])}"
                    if comparison["regressions"]
                    else "no regression"
                )
                if comparison
                else "no earlier run to compare with"
            )
        with stages.run("html") as stage:
            values = report.context(run_dir, run_dir.name, started, provenance=record.as_dict())
            html = report.render_html(values)
            artifacts.write_text(run_dir / artifacts.REPORT_HTML, html)
            stage.detail = artifacts.REPORT_HTML
        with stages.run("pdf") as stage:
            attachments = [run_dir / artifacts.METRICS, run_dir / artifacts.CONFIG]
            pages = report.write_pdf(
                html, run_dir / artifacts.REPORT_PDF, run_dir, attachments, started
            )
            stage.detail = f"{artifacts.REPORT_PDF}, {pages} pages"
        if handout:
            with stages.run("handout") as stage:
                stage.detail = write_handout(run_dir, config, started)
    except BaseException as error:
        end_failed_run(run_dir, record, stages.current, error, config.report.lang)
    if earlier is None:  # a reused run points back to the run that executed the notebook
        cache.remember_notebook(cache_root, notebook_key, run_dir)
    regressions = comparison["regressions"] if comparison else []
    record.finish("finished", regressions=regressions, content_digest=metrics["content_digest"])
    note = mark_latest(run_dir)
    if note:
        stream.write(f"      {note}\n")
    seconds = time.perf_counter() - stages.clock
    stream.write(f"done in {format_duration(seconds)}: {run_dir}\n")
    if regressions:
        raise QualityRegression(
            f"quality regression against {comparison['baseline']}: {', '.join(regressions)} "
            f"(report written to {run_dir})"
        )
    return BuildResult(run_dir=run_dir, pages=pages, seconds=seconds, regressions=regressions)


def run_notebook(
    run_dir: Path,
    config: Config,
    dataset: dict,
    training_inputs: dict,
    cache_root: Path,
    retrain: bool,
    stream,
) -> None:
    """Execute the lab in `run_dir`, then publish it as the answer key: harness cells out, the
    run's answers in after the questions. The lab loads the verified files through a Keras
    cache made for this run, as `load_data()` would after downloading them."""
    settings = notebook.harness_settings(
        config, dataset, training_inputs, cache_root.resolve(), run_dir.name, retrain
    )
    with tempfile.TemporaryDirectory(prefix="dae-report-keras-") as keras_home:
        data.fill_keras_cache(Path(dataset["source"]), Path(keras_home))
        executed = notebook.execute(run_dir, config, settings, Path(keras_home), stream=stream)
    metrics = artifacts.read_json(run_dir / artifacts.METRICS)
    lang = config.report.lang
    key = notebook.answer_key(
        nbformat.read(executed, as_version=4), lambda name: report.answer(name, metrics, lang)
    )
    artifacts.write_text(executed, nbformat.writes(key))


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
            self.values["error"] = {"stage": self.stages.current, "message": describe(error)}
        self._write()

    def _write(self) -> None:
        try:
            artifacts.write_json(self.run_dir / artifacts.RUN_RECORD, self.as_dict())
        except OutputError:
            if self.values["status"] != "failed":  # a failed run on a full disk keeps its error
                raise


def write_handout(folder: Path, config: Config, started: datetime | None = None) -> str:
    """handout.ipynb, handout.pdf and the nbgrader source notebook in `folder`, in the config's
    language; returns a summary."""
    started = started or datetime.now().astimezone()
    student = notebook.handout(config)
    artifacts.write_text(folder / artifacts.HANDOUT_NOTEBOOK, nbformat.writes(student))
    artifacts.write_text(
        folder / artifacts.NBGRADER_SOURCE, nbformat.writes(notebook.source(config))
    )
    html = report.render_handout(student, config.to_dict(), started)
    pages = report.write_pdf(html, folder / artifacts.HANDOUT_PDF, folder, created=started)
    return f"{artifacts.HANDOUT_NOTEBOOK}, {artifacts.HANDOUT_PDF} ({pages} pages), {artifacts.NBGRADER_SOURCE}"


def handout(*, config: Config, out_dir: Path, stream=None) -> Path:
    """`dae-report handout`: the student handout alone, no training, into `out_dir`."""
    stream = terminal(stream)  # a closed pipe (`| head`) drops progress, not the run
    folder = prepare_out_dir(Path(out_dir).absolute())
    cover_warnings(config, lambda line: stream.write(f"      {line}\n"))
    summary = write_handout(folder, config)
    stream.write(f"handout: {folder} · {summary}\n")
    return folder


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

    def run(self, name: str, announce: str = "") -> _Stage:
        self.count += 1
        self.current = name
        return _Stage(self, name, announce)

    def warn(self, message: str) -> None:
        """One line inside the running stage, indented like the notebook's progress lines."""
        self.stream.write(f"      {message}\n")
        self.stream.flush()


class _Stage:
    def __init__(self, stages: Stages, name: str, announce: str) -> None:
        self.stages, self.name, self.announce, self.detail = stages, name, announce, ""
        self.label = f"[{stages.count}/{stages.total}] {name:<8} "

    def __enter__(self) -> _Stage:
        self.started = time.perf_counter()
        self.stages.times[self.name] = {"started": _now()}
        self.stages.on_change()
        if self.announce:  # a long stage says what it does before it starts
            self.stages.stream.write(f"{self.label}{self.announce}\n")
            self.stages.stream.flush()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        seconds = time.perf_counter() - self.started
        self.stages.times[self.name].update(ended=_now(), seconds=round(seconds, 3))
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
    if not _writable(out_dir):
        raise OutputError(f"the output folder {out_dir} is not writable")
    return out_dir


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


def create_run_dir(out_dir: Path, started: datetime, profile: str) -> Path:
    """reports/<YYYYmmdd-HHMMSS>-<profile>[-n]: a new folder, never an earlier run's."""
    prepare_out_dir(out_dir)
    stem = f"{started:%Y%m%d-%H%M%S}-{profile}"
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


def describe(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
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
        message = f"the {stage} stage failed: {describe(error)} (--debug shows the traceback)"
        raise RunError(message) from error
    raise error


def write_failure(run_dir: Path, stage: str | None, error: BaseException, lang: str) -> None:
    """failure.log for machines, failure.html for people; never raises over the real error."""
    message = describe(error)
    try:
        artifacts.write_text(run_dir / artifacts.FAILURE_LOG, f"stage: {stage}\nerror: {message}\n")
        log = run_dir / artifacts.BUILD_LOG
        tail = log.read_text(encoding="utf-8").splitlines()[-20:] if log.is_file() else []
        html = report.render_failure(run_dir.name, stage, message, tail, lang)
        artifacts.write_text(run_dir / artifacts.FAILURE_HTML, html)
    except Exception:  # e.g. the disk is full: the exit code and the message still tell
        pass
