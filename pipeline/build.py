"""`dae-report build`: data check → lab notebook → HTML → PDF → reports/latest.

Each run gets its own folder, reports/<run-id>/, and only a run that finished every stage
becomes reports/latest. A failed run keeps its folder, with failure.log naming the stage.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline import artifacts, data, notebook, report
from pipeline.config import Config
from pipeline.errors import DaeReportError, OutputError
from pipeline.progress import format_duration


@dataclass(frozen=True)
class BuildResult:
    run_dir: Path
    pages: int
    seconds: float


def build(*, config: Config, out_dir: Path, data_dir: Path | None = None, stream=None) -> BuildResult:
    """Train, evaluate and report one run of the lab with `config`; returns where it went."""
    stream = stream or sys.stderr
    started, clock = datetime.now().astimezone(), time.perf_counter()
    stages = Stages(stream, total=4)

    with stages.run("data") as stage:
        folder = data.locate(data_dir)
        dataset = data.load(folder)
        # Limits are checked against the real data before anything is written.
        data.limit(dataset.train_images, dataset.train_labels, config.data.train_limit, "train")
        data.limit(dataset.test_images, dataset.test_labels, config.data.test_limit, "test")
        stage.detail = f"{folder} (verified)"
        del dataset  # the kernel loads its own copy; this process needs no 50 MB of images

    run_dir = create_run_dir(Path(out_dir), started, config.profile)
    stream.write(f"      run folder {run_dir}\n")
    artifacts.write_json(run_dir / artifacts.CONFIG, config.to_dict())
    try:
        with stages.run("notebook", "the lab, executed by papermill → answer-key.ipynb") as stage:
            notebook.execute(
                run_dir,
                parameters={"config": config.to_dict(), "data_dir": str(folder), "run_dir": "."},
                stream=stream,
            )
        with stages.run("html") as stage:
            html = report.render_html(report.context(run_dir, run_dir.name, started))
            artifacts.write_text(run_dir / artifacts.REPORT_HTML, html)
            stage.detail = artifacts.REPORT_HTML
        with stages.run("pdf") as stage:
            pages = report.write_pdf(html, run_dir / artifacts.REPORT_PDF, run_dir)
            stage.detail = f"{artifacts.REPORT_PDF}, {pages} pages"
    except BaseException as error:
        write_failure(run_dir, stages.current, error)
        raise
    mark_latest(run_dir)
    seconds = time.perf_counter() - clock
    stream.write(f"done in {format_duration(seconds)}: {run_dir}\n")
    return BuildResult(run_dir=run_dir, pages=pages, seconds=seconds)


class Stages:
    """Prints `[n/total] name  detail  seconds` for each stage and remembers which one runs."""

    def __init__(self, stream, total: int) -> None:
        self.stream, self.total, self.count, self.current = stream, total, 0, None

    def run(self, name: str, announce: str = "") -> _Stage:
        self.count += 1
        self.current = name
        return _Stage(self, name, announce)


class _Stage:
    def __init__(self, stages: Stages, name: str, announce: str) -> None:
        self.stages, self.name, self.announce, self.detail = stages, name, announce, ""
        self.label = f"[{stages.count}/{stages.total}] {name:<9}"

    def __enter__(self) -> _Stage:
        self.started = time.perf_counter()
        if self.announce:  # a long stage says what it does before it starts
            self.stages.stream.write(f"{self.label}{self.announce}\n")
            self.stages.stream.flush()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            seconds = time.perf_counter() - self.started
            detail = self.detail or ("done" if self.announce else "")
            self.stages.stream.write(f"{self.label}{detail}  ({seconds:.1f} s)\n")
            self.stages.stream.flush()


def create_run_dir(out_dir: Path, started: datetime, profile: str) -> Path:
    """reports/<YYYYmmdd-HHMMSS>-<profile>[-n]: a new folder, never an earlier run's."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file, not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the output folder {out_dir}: {error.strerror}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise OutputError(f"the output folder {out_dir} is not writable")
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


def mark_latest(run_dir: Path) -> None:
    """Point reports/latest at `run_dir`, atomically (a new link replaces the old one)."""
    link = run_dir.parent / artifacts.LATEST
    temporary = run_dir.parent / f".{artifacts.LATEST}.{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(temporary, link)


def write_failure(run_dir: Path, stage: str | None, error: BaseException) -> None:
    if isinstance(error, KeyboardInterrupt):
        message = "interrupted"
    elif isinstance(error, DaeReportError):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
    artifacts.write_text(run_dir / artifacts.FAILURE_LOG, f"stage: {stage}\nerror: {message}\n")
