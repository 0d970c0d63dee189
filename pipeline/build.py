"""`dae-report build`: data check → lab notebook → quality gate → HTML → PDF → reports/latest.

`build` reads as the list of its stages, one function each (`data_stage`, `notebook_stage`,
`gate_stage`, `html_stage`, `pdf_stage`, `handout_stage`). The run's folder, run.json, the
failed-run ending and `latest` are pipeline.run's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat

from pipeline import (
    artifacts,
    cache,
    data,
    environment,
    gate,
    index,
    notebook,
    provenance,
    report,
    summary,
)
from pipeline.config import Config
from pipeline.errors import QualityRegression
from pipeline.progress import terminal
from pipeline.run import Run, Stages, check_latest, cover_warnings, prepare_out_dir


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
    run = Run("build", config, out_dir, stream, stage_count=6 if handout else 5)
    baseline = gate.load_baseline(compare_to) if compare_to is not None else None
    check_latest(run.out_dir)  # a `latest` that is not ours to replace fails now, not after the run
    warnings = cover_warnings(config, run.stages.warn)  # said before the work, not in the PDF
    dataset = data_stage(run.stages, config, data_dir)
    try:
        with run.open(config.profile, warnings=warnings, show_folder=True) as run_dir:
            notebook_key, earlier = notebook_stage(run, dataset, retrain)
            comparison, content_digest = gate_stage(run, baseline)
            html = html_stage(run)
            pages = pdf_stage(run, html)
            if handout:
                handout_stage(run)
        if earlier is None:  # a reused run points back to the run that executed the notebook
            cache.remember_notebook(run.out_dir / cache.CACHE_DIR, notebook_key, run_dir)
        regressions = comparison["regressions"] if comparison else []
        seconds = run.finish(latest=True, regressions=regressions, content_digest=content_digest)
        if regressions:
            raise QualityRegression(
                f"quality regression against {comparison['baseline']}: {', '.join(regressions)} "
                f"(report written to {run_dir})"
            )
    finally:
        after_run(run)
    return BuildResult(run_dir=run_dir, pages=pages, seconds=seconds, regressions=regressions)


def after_run(run: Run) -> None:
    """However a run ended (finished, regressed, failed, stopped), once it has a folder: the
    reports folder's index, and in GitHub Actions the step summary. Neither can change the
    run's outcome or exit code: each says one warning line if it cannot be written."""
    if run.folder is None or not run.folder.is_dir():
        return  # bad input before the run: nothing new to list or summarise
    index.refresh(run.out_dir, run.stream)
    summary.append(run.folder, run.stream)


def data_stage(stages: Stages, config: Config, data_dir: Path | None) -> dict:
    """Find and verify the data, and check the config's limits against it, before anything is
    written; returns where it came from, for the notebook (its images are not kept)."""
    with stages.run("data") as stage:
        folder = data.locate(data_dir)
        dataset = data.load(folder)
        check_data(config, dataset)
        stage.detail = f"{folder} (verified)"
        # The kernel loads its own copy: this process needs no 50 MB of images.
        return {
            "source": str(folder),
            "digests": dataset.digests,
            "available": {"train": len(dataset.train_images), "test": len(dataset.test_images)},
        }


def check_data(config: Config, dataset: data.Dataset) -> None:
    """The config's limits against the data (DataError, exit 2): enough images for the limits,
    for the validation split, and of every class in the test set."""
    train_images, _ = data.limit(
        dataset.train_images, dataset.train_labels, config.data.train_limit, "train"
    )
    data.limit(dataset.test_images, dataset.test_labels, config.data.test_limit, "test")
    data.validation_size(len(train_images), config.split.val_fraction)
    data.require_every_class(dataset.test_labels, config.data.test_limit, "test")


def notebook_stage(run: Run, dataset: dict, retrain: bool) -> tuple[str, Path | None]:
    """The lab notebook, executed (answer-key.ipynb, metrics.json, figures/, model.keras), or an
    earlier run's outputs when nothing the notebook uses changed. Returns the notebook's cache
    key and the earlier run reused, if any."""
    config, run_dir, cache_root = run.config, run.folder, run.out_dir / cache.CACHE_DIR
    machine = environment.machine_choices(config, stream=run.stream)  # measured per machine
    training_inputs, notebook_key = notebook_keys(config, dataset["digests"], machine)
    with run.stages.run("notebook", "the lab, executed by papermill → answer-key.ipynb") as stage:
        # An earlier run's outputs, each checked against its digest as it is copied; a
        # damaged entry is discarded with one line, and the notebook runs again.
        earlier = (
            None
            if retrain
            else cache.reuse_notebook(cache_root, notebook_key, run_dir, warn=run.stages.warn)
        )
        if earlier is not None:
            stage.detail = f"reused {earlier.name}'s outputs: nothing the notebook uses changed"
        else:
            run_notebook(
                run_dir,
                config,
                dataset,
                (training_inputs, machine),
                cache_root,
                retrain,
                run.stream,
            )
        answers = nbformat.read(run_dir / artifacts.ANSWER_KEY, as_version=4)
        copy = config.report.instructor_copy
        notebook.mark_instructor_copy(answers, config.report.lang, copy)
        artifacts.write_text(run_dir / artifacts.ANSWER_KEY, nbformat.writes(answers))
    kernel = dict(artifacts.read_json(run_dir / artifacts.METRICS).get("resources") or {})
    run.record.notebook = {
        "key": notebook_key,
        "reused_from": earlier.name if earlier else None,
        # the kernel's peak memory, stage by stage, and the seconds of each part of the analysis
        # after the lab's cells (an earlier run's, when reused)
        "analysis_seconds": kernel.pop("analysis_seconds", None),
        "kernel_memory": kernel or None,
    }
    return notebook_key, earlier


def notebook_keys(config: Config, digests: dict[str, str], machine: dict) -> tuple[dict, str]:
    """What the training depends on (the model cache's inputs) and the notebook's cache key:
    two configs with the same key give the same executed notebook, metrics and figures.
    `machine`: this machine's precision and XLA (environment.machine_choices)."""
    training_inputs = cache.training_inputs(
        config.to_dict(), digests, machine, notebook.training_code(config)
    )
    return training_inputs, cache.digest(cache.notebook_inputs(training_inputs, config.to_dict()))[
        :16
    ]


def gate_stage(run: Run, baseline: tuple | None) -> tuple[dict | None, str]:
    """The quality gate: this run's headline metrics against `baseline` (by default the newest
    finished build of the profile that passed its gate), into metrics.json with the content
    digest. Returns the comparison (None without a baseline) and the digest."""
    run_dir = run.folder
    with run.stages.run("gate") as stage:
        metrics = artifacts.read_json(run_dir / artifacts.METRICS)
        if baseline is None:
            baseline = gate.default_baseline(run.out_dir, run.config.profile, exclude=run_dir)
        comparison = (
            gate.compare(metrics, baseline[0], run.config.quality.max_regression, baseline[1])
            if baseline is not None
            else None
        )
        metrics["comparison"] = comparison
        artifacts.write_json(run_dir / artifacts.METRICS, metrics)
        metrics["content_digest"] = provenance.content_digest(run_dir)
        artifacts.write_json(run_dir / artifacts.METRICS, metrics)
        stage.detail = _gate_detail(comparison)
    return comparison, metrics["content_digest"]


def _gate_detail(comparison: dict | None) -> str:
    if comparison is None:
        return "no earlier run to compare with"
    regressions = comparison["regressions"]
    verdict = f"regressed: {', '.join(regressions)}" if regressions else "no regression"
    return f"with {comparison['baseline']}: {verdict}"


def html_stage(run: Run) -> str:
    """report.html, self-contained; returns it for the PDF."""
    with run.stages.run("html") as stage:
        record = run.record.as_dict()
        values = report.context(run.folder, run.folder.name, run.started, provenance=record)
        html = report.render_html(values)
        artifacts.write_text(run.folder / artifacts.REPORT_HTML, html)
        stage.detail = artifacts.REPORT_HTML
    return html


def pdf_stage(run: Run, html: str) -> int:
    """report.pdf, with metrics.json and config.json attached; returns its page count."""
    run_dir = run.folder
    with run.stages.run("pdf") as stage:
        attachments = [run_dir / artifacts.METRICS, run_dir / artifacts.CONFIG]
        pages = report.write_pdf(
            html, run_dir / artifacts.REPORT_PDF, run_dir, attachments, run.started
        )
        stage.detail = f"{artifacts.REPORT_PDF}, {pages} pages"
    return pages


def handout_stage(run: Run) -> None:
    """The student handout and the nbgrader source, beside the answer key."""
    with run.stages.run("handout") as stage:
        stage.detail = write_handout(run.folder, run.config, run.started)


def run_notebook(
    run_dir: Path,
    config: Config,
    dataset: dict,
    inputs: tuple[dict, dict],
    cache_root: Path,
    retrain: bool,
    stream,
) -> None:
    """Execute the lab in `run_dir`, then publish it as the answer key: harness cells out, the
    run's answers in after the questions. The lab loads the verified files through a Keras
    cache made for this run, as `load_data()` would after downloading them."""
    training_inputs, machine = inputs  # the model cache's key; precision and XLA chosen
    settings = notebook.harness_settings(
        config, dataset, training_inputs, cache_root.resolve(), run_dir.name, retrain, machine
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
    return (
        f"{artifacts.HANDOUT_NOTEBOOK}, {artifacts.HANDOUT_PDF} ({pages} pages), "
        f"{artifacts.NBGRADER_SOURCE}"
    )


def handout(*, config: Config, out_dir: Path, stream=None) -> Path:
    """`dae-report handout`: the student handout alone, no training, into `out_dir`."""
    stream = terminal(stream)  # a closed pipe (`| head`) drops progress, not the run
    folder = prepare_out_dir(Path(out_dir).absolute())
    cover_warnings(config, lambda line: stream.write(f"      {line}\n"))
    summary = write_handout(folder, config)
    stream.write(f"handout: {folder} · {summary}\n")
    return folder
