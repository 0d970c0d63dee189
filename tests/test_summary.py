"""The build's GitHub Actions step summary: run folders made by hand from the committed sample
of a real quick build (finished, regressed, failed), a temporary file as $GITHUB_STEP_SUMMARY."""

import copy
import io
import json
import os
import re
import threading
from pathlib import Path

import pytest
from conftest import RUN_SAMPLE_DIR

from pipeline import gate, summary
from pipeline.config import MaxRegression

SAMPLE_METRICS = json.loads((RUN_SAMPLE_DIR / "metrics.json").read_text(encoding="utf-8"))
SAMPLE_CONFIG = json.loads((RUN_SAMPLE_DIR / "config.json").read_text(encoding="utf-8"))
HEADLINE_PATHS = {name: path for name, path, *_ in gate.HEADLINES}
ARTIFACT = "lab-report-42"
BASELINE = "20261101-031700-quick"
RUN = "20261108-031700-quick"


def write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value), encoding="utf-8")


def make_build(
    reports: Path,
    name: str,
    *,
    record: dict | None = None,
    headlines: dict | None = None,
    epochs: int | None = None,
    metrics: bool = True,
) -> Path:
    """reports/<name>/ as a build leaves it: the sample's config.json (with `epochs`), its
    metrics.json with `headlines` changed and compared with BASELINE's as gate_stage compares,
    and run.json (`record` over a finished build's)."""
    folder = reports / name
    folder.mkdir(parents=True)
    config = copy.deepcopy(SAMPLE_CONFIG)
    if epochs is not None:
        config["training"]["epochs"] = epochs
    write_json(folder / "config.json", config)
    if metrics:
        values = copy.deepcopy(SAMPLE_METRICS)
        for headline, value in (headlines or {}).items():
            *parents, last = HEADLINE_PATHS[headline]
            node = values
            for part in parents:
                node = node[part]
            node[last] = value
        thresholds = MaxRegression(**config["quality"]["max_regression"])
        values["comparison"] = gate.compare(values, SAMPLE_METRICS, thresholds, BASELINE)
        write_json(folder / "metrics.json", values)
    write_json(
        folder / "run.json",
        {"run_id": name, "command": "build", "profile": "quick", "status": "finished"}
        | (record or {}),
    )
    return folder


@pytest.fixture
def reports(tmp_path) -> Path:
    """reports/ holding BASELINE, the run the others are compared with."""
    folder = tmp_path / "reports"
    make_build(folder, BASELINE, metrics=False)
    return folder


@pytest.fixture
def step_summary(tmp_path, monkeypatch) -> Path:
    """$GITHUB_STEP_SUMMARY as GitHub Actions sets it, and the artifact's name as the
    workflow's build step does."""
    path = tmp_path / "step_summary.md"
    path.touch()
    monkeypatch.setenv(summary.SUMMARY_ENV, str(path))
    monkeypatch.setenv(summary.ARTIFACT_ENV, ARTIFACT)
    return path


def appended(run_dir: Path, step_summary: Path) -> str:
    stream = io.StringIO()
    summary.append(run_dir, stream)
    assert stream.getvalue() == ""  # no warning
    return step_summary.read_text(encoding="utf-8")


def metric_table(markdown: str) -> dict[str, list[str]]:
    """The headline table's rows by metric name (cells split on unescaped pipes), the header
    row under "metric"."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|:\- ]+", line):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            rows[cells[0].strip("`")] = cells
    return rows


def test_a_finished_run_names_itself_its_metrics_its_verdict_and_its_artifact(
    reports, step_summary
):
    text = appended(make_build(reports, RUN, epochs=7), step_summary)
    assert text.startswith(f"### dae-report build `{RUN}`: finished\n")
    assert f"- **artifact:** `{ARTIFACT}`" in text
    assert f"- **gate:** no regression against `{BASELINE}`" in text
    table = metric_table(text)
    assert set(gate.headlines(SAMPLE_METRICS)) <= set(table)
    verdict = table["metric"].index("verdict")
    assert {table[name][verdict] for name in gate.headlines(SAMPLE_METRICS)} == {"same"}
    # the compared run is beside it: what changed in the config is said too
    assert "#### Config: 1 key differs" in text
    epochs = SAMPLE_CONFIG["training"]["epochs"]
    assert table["training.epochs"][1:] == [f"`{epochs}`", "`7`"]


def test_a_regressed_run_says_which_metric_regressed(reports, step_summary):
    worse = (
        gate.headlines(SAMPLE_METRICS)["ssim_mean"]
        - 10 * SAMPLE_CONFIG["quality"]["max_regression"]["ssim"]
    )
    run = make_build(
        reports, RUN, headlines={"ssim_mean": worse}, record={"regressions": ["ssim_mean"]}
    )
    text = appended(run, step_summary)
    assert text.startswith(f"### dae-report build `{RUN}`: regressed\n")
    assert f"- **gate:** regressed against `{BASELINE}`: `ssim_mean`" in text
    table = metric_table(text)
    assert table["ssim_mean"][table["metric"].index("verdict")] == "regressed"
    assert table["ssim_mean"][table["metric"].index("this run")] == f"{worse:.6g}"


def test_a_failed_run_gives_its_stage_and_error(reports, step_summary):
    error = {"stage": "notebook", "message": "RunError: the notebook stage failed: | `boom`"}
    run = make_build(reports, RUN, record={"status": "failed", "error": error}, metrics=False)
    text = appended(run, step_summary)
    assert text.startswith(f"### dae-report build `{RUN}`: failed in the notebook stage\n")
    assert "- **gate:** not reached" in text
    assert f"```text\n{error['message']}\n```" in text  # verbatim, inside a code block
    assert metric_table(text) == {}  # no metrics: no table
    assert f"`{ARTIFACT}`" in text


def test_it_appends_after_what_the_step_wrote(reports, step_summary):
    step_summary.write_text("# An earlier line\n", encoding="utf-8")
    run = make_build(reports, RUN)
    appended(run, step_summary)
    text = appended(run, step_summary)
    assert text.startswith("# An earlier line\n\n### dae-report build")
    assert text.count(f"### dae-report build `{RUN}`") == 2


def test_without_an_artifact_name_there_is_no_artifact_line(reports, step_summary, monkeypatch):
    monkeypatch.delenv(summary.ARTIFACT_ENV)
    text = appended(make_build(reports, RUN), step_summary)
    assert "artifact" not in text and f"`{RUN}`" in text


def test_a_huge_error_stays_under_the_cap(reports, step_summary):
    """GitHub drops a step's summary past 1 MiB: the build's is capped at a few kB whatever the
    error, the names or the config say."""
    error = {"stage": "pdf", "message": "é" * 2**20}  # 2 MiB of UTF-8
    run = make_build(
        reports,
        RUN,
        record={"status": "failed", "error": error, "run_id": "界" * 10_000},
        epochs=9,
    )
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    config["report"] = {f"field_{n}": "x" * 10_000 for n in range(200)}  # 200 changed keys
    write_json(run / "config.json", config)
    step_summary.write_text("before\n", encoding="utf-8")
    text = appended(run, step_summary)
    added = len(text.encode("utf-8")) - len(b"before\n")
    assert 0 < added <= summary.MAX_BYTES <= 16 * 2**10  # a few kB, far below GitHub's 1 MiB
    assert "é" * 100 in text and "(cut)" in text
    assert "… and" in text  # the config list says how many keys it left out


def test_fit_leaves_out_what_does_not_fit_and_says_so():
    sections = ["### head", "a" * 100, "b" * 10_000, "c" * 10]
    text = summary.fit(sections, 1000)
    assert len(text.encode("utf-8")) <= 1000
    assert "a" * 100 in text and "b" not in text and "c" * 10 not in text
    assert "cut here" in text
    assert summary.fit(["x" * 5000], 100).encode("utf-8").__len__() <= 100


def test_nothing_is_written_outside_github_actions(reports, tmp_path, monkeypatch):
    monkeypatch.delenv(summary.SUMMARY_ENV, raising=False)
    before = sorted(path.name for path in tmp_path.iterdir())
    stream = io.StringIO()
    summary.append(make_build(reports, RUN), stream)
    assert stream.getvalue() == ""
    assert sorted(path.name for path in tmp_path.iterdir()) == before


@pytest.mark.parametrize("kind", ["a folder", "in a missing folder", "a FIFO"])
def test_an_unwritable_summary_warns_and_does_not_raise(reports, tmp_path, monkeypatch, kind):
    target = tmp_path / "summary"
    if kind == "a folder":
        target.mkdir()
    elif kind == "in a missing folder":
        target = tmp_path / "missing" / "summary"
    else:
        os.mkfifo(target)  # no reader: a blocking open would hang the build's end
    monkeypatch.setenv(summary.SUMMARY_ENV, str(target))
    run, stream = make_build(reports, RUN), io.StringIO()
    writer = threading.Thread(target=summary.append, args=(run, stream), daemon=True)
    writer.start()
    writer.join(timeout=10)
    if writer.is_alive():  # blocked opening the FIFO: a reader lets it go, then the test fails
        os.close(os.open(target, os.O_RDONLY | os.O_NONBLOCK))
        pytest.fail(f"append blocked on {kind}")
    (line,) = stream.getvalue().splitlines()
    assert line.startswith("warning: GitHub step summary not written")


def test_a_run_folder_without_run_json_warns(reports, step_summary):
    run = make_build(reports, RUN)
    (run / "run.json").unlink()
    stream = io.StringIO()
    summary.append(run, stream)
    assert stream.getvalue().startswith("warning: GitHub step summary not written")
    assert step_summary.read_text(encoding="utf-8") == ""


def test_a_closed_warning_stream_does_not_raise(reports, tmp_path, monkeypatch):
    monkeypatch.setenv(summary.SUMMARY_ENV, str(tmp_path))  # a folder: it must warn
    stream = io.StringIO()
    stream.close()
    summary.append(make_build(reports, RUN), stream)
