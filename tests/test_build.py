"""End-to-end builds of the quick profile on the committed real subset: the suite's shared build
(conftest's `quick_build`), then builds on private copies of its reports/ folder that reuse it,
retrain it for determinism, or fail or regress. No test here sees another's builds."""

import json
import re
import shutil
from datetime import datetime
from pathlib import Path

import keras
import nbformat
import numpy as np
import pytest
from pypdf import PdfReader

from pipeline import artifacts, compare, data, evaluate, notebook, provenance
from pipeline.build import build
from pipeline.config import Config, load_config
from pipeline.errors import QualityRegression, RunError
from tests.conftest import RUN_SAMPLE_DIR, SUBSET_DIR, TINY, dae_report
from tests.test_report import FIGURE_NAMES, SECTION_TITLES


def quick_again(out: Path, **options):
    """The shared build's command again (in process), into `out`."""
    return build(config=load_config("quick"), out_dir=out, data_dir=SUBSET_DIR, **options)


@pytest.fixture(scope="module")
def rebuilds(quick_build, tmp_path_factory):
    """Two builds with unchanged inputs in a copy of the shared reports/: both reuse its
    notebook outputs. Module-scoped, and no other test builds into that copy."""
    out = tmp_path_factory.mktemp("rebuilds") / "reports"
    shutil.copytree(quick_build.out, out, symlinks=True)
    return [quick_again(out) for _ in range(2)]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def pdf_text(path: Path) -> str:
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in PdfReader(path).pages))


def results(run_dir: Path) -> dict:
    return provenance._without_run_specifics(read_json(run_dir / "metrics.json"))


def test_run_folder_holds_every_artifact(quick_build):
    run = quick_build.run_dir
    for name in (
        "report.html",
        "report.pdf",
        "answer-key.ipynb",
        "metrics.json",
        "config.json",
        "model.keras",
        "run.json",
    ):
        assert (run / name).stat().st_size > 0, name
    assert len(list((run / "figures").glob("*.png"))) == len(FIGURE_NAMES)
    assert {p.stem for p in (run / "figures").glob("*.svg")} == set(FIGURE_NAMES)
    assert not (run / artifacts.FAILURE_LOG).exists()
    record = read_json(run / "run.json")
    assert record["status"] == "finished" and record["content_digest"]
    assert set(record["stages"]) == {"data", "notebook", "gate", "html", "pdf", "handout"}
    # the notebook stage's breakdown: the kernel's memory by stage, the analysis by part
    assert set(record["notebook"]["kernel_memory"]["stages"]) == {
        "sections 1-5",
        "training and sections 6-8",
        "analysis",
    }
    assert list(record["notebook"]["analysis_seconds"]) == [
        "lab §1-§6",
        "lab §7-§8",
        "baselines",
        "generalisation",
    ]


def test_config_json_is_the_config_the_run_used(quick_build):
    assert Config.from_dict(read_json(quick_build.run_dir / "config.json")) == load_config("quick")


def test_model_keras_is_the_model_the_report_evaluated(quick_build):
    """The saved model, loaded on its own, gives the report's test MSE on the run's noisy test
    images (the seeded generator's first draw, as the notebook makes them: compare.prepare)."""
    run, config = quick_build.run_dir, load_config("quick")
    metrics = read_json(run / "metrics.json")
    model = keras.saving.load_model(run / "model.keras")
    assert model.count_params() == metrics["model"]["parameters"]
    x_test, x_test_noisy = compare.prepare(config, data.load(SUBSET_DIR)).test
    denoised = model.predict(x_test_noisy, batch_size=config.training.batch_size, verbose=0)
    mse = evaluate.per_image_mse(x_test, denoised)
    assert float(mse.mean()) == pytest.approx(metrics["reconstruction"]["mse"]["mean"], rel=1e-5)
    assert float(np.median(mse)) == pytest.approx(
        metrics["reconstruction"]["mse"]["median"], rel=1e-5
    )


def test_pdf_has_every_section_and_several_pages(quick_build):
    reader = PdfReader(quick_build.run_dir / "report.pdf")
    assert len(reader.pages) >= 8
    text = pdf_text(quick_build.run_dir / "report.pdf")
    for title in SECTION_TITLES["es"]:
        assert title in text, title
    for word in (
        "Fashion-MNIST",
        "gaussiano",
        "Sneaker",
        "Figura 12.",
        "Índice",
        "¿Qué tipo de ruido persiste?",
        "Anexo B. Procedencia de la ejecución",
        "no había ningún modelo en caché",
    ):
        assert word in text, word
    assert f"{len(reader.pages)} / {len(reader.pages)}" in text  # page numbers
    assert set(reader.attachments) == {"metrics.json", "config.json"}
    assert f"report.pdf, {len(reader.pages)} pages" in quick_build.stderr  # the pdf stage's line


def test_html_embeds_its_images(quick_build):
    html = (quick_build.run_dir / "report.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/svg+xml;base64,') == len(FIGURE_NAMES)
    assert not re.search(r'<img[^>]+src="(?!data:)', html)


def test_answer_key_ran_without_errors(quick_build):
    answer_key = nbformat.read(quick_build.run_dir / "answer-key.ipynb", as_version=4)
    nbformat.validate(answer_key)
    code = [cell for cell in answer_key.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # the lab's own eight plots (§1.2, 1.3, 2.2, 3.2, 3.3, 6.1, 7, 8.1), drawn by its own code
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 8
    printed = "".join(o.get("text", "") for o in outputs)
    assert "Forma de x_train: (4000, 28, 28)" in printed and "Epoch 2/2" in printed
    answers = "".join(cell.source for cell in answer_key.cells if cell.cell_type == "markdown")
    assert "¿Qué tipo de ruido persiste?**" in answers and "percentil 99" in answers
    assert "cudart" not in printed  # TensorFlow's C++ messages stay in kernel.log


def test_handout_is_written_beside_the_answer_key(quick_build):
    """The shared build's handout and nbgrader source are the lab's, for the run's config."""
    run = quick_build.run_dir
    config = Config.from_dict(read_json(run / "config.json"))
    handout = nbformat.read(run / "handout.ipynb", as_version=4)
    assert [c.source for c in handout.cells] == [c.source for c in notebook.handout(config).cells]
    assert sum("# TU CÓDIGO AQUÍ" in c.source for c in handout.cells if c.cell_type == "code") == 7
    assert not any(c.get("outputs") for c in handout.cells if c.cell_type == "code")
    source = nbformat.read(run / "nbgrader-source.ipynb", as_version=4)
    assert [c.source for c in source.cells] == [c.source for c in notebook.source(config).cells]
    text = pdf_text(run / "handout.pdf")
    assert "¿Qué tipo de ruido persiste?" in text and "percentil" not in text
    assert (
        "def add_gaussian_noise(images, mean, std, rng):" in text
        and "rng.standard_normal" not in text
    )


def test_metrics_hold_the_numbers(quick_build):
    metrics = read_json(quick_build.run_dir / "metrics.json")
    assert metrics["split"] == {"val_fraction": 0.1, "train": 3600, "validation": 400, "test": 1000}
    assert metrics["model"]["parameters"] == 74497
    assert len(metrics["training"]["loss"]) == len(metrics["training"]["val_loss"]) == 2
    reconstruction = metrics["reconstruction"]
    mse = reconstruction["mse"]
    assert 0 < mse["min"] <= mse["median"] <= mse["max"]
    # Even two epochs on 3 600 images must beat the noisy input.
    assert mse["mean"] < reconstruction["noisy_input"]["mse"]["mean"]
    assert metrics["training"]["cache"]["trained"] is True
    assert metrics["comparison"] is None  # nothing earlier to compare with
    assert metrics["content_digest"] == provenance.content_digest(quick_build.run_dir)


def test_sample_metrics_used_by_template_tests_match_a_real_run(quick_build):
    """tests/data/run/metrics.json stands in for a run in test_report; keep its shape real."""

    def shape(value):
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items()}
        return type(value).__name__

    real = results(quick_build.run_dir)
    sample = provenance._without_run_specifics(read_json(RUN_SAMPLE_DIR / "metrics.json"))
    real.pop("comparison")
    sample.pop("comparison", None)
    assert shape(sample) == shape(real)


def test_rebuild_reuses_and_only_rerenders(quick_build, rebuilds):
    for rebuilt in rebuilds:
        record = read_json(rebuilt.run_dir / "run.json")
        assert record["notebook"]["reused_from"] == quick_build.run_dir.name
        assert record["stages"]["notebook"]["seconds"] < 5
        assert results(rebuilt.run_dir) == {
            **results(quick_build.run_dir),
            "comparison": results(rebuilt.run_dir)["comparison"],
        }
        assert "Modelo, cifras y figuras reutilizados" in pdf_text(rebuilt.run_dir / "report.pdf")
    assert (rebuilds[-1].run_dir.parent / "latest").resolve() == rebuilds[-1].run_dir.resolve()


def test_rebuild_compares_with_the_previous_run(quick_build, rebuilds):
    for earlier, rebuilt in zip([quick_build.run_dir, rebuilds[0].run_dir], rebuilds, strict=True):
        comparison = read_json(rebuilt.run_dir / "metrics.json")["comparison"]
        assert comparison["baseline"] == earlier.name and comparison["regressions"] == []
    assert "Anexo A. Comparación con una ejecución anterior" in pdf_text(
        rebuilds[0].run_dir / "report.pdf"
    )


def test_unchanged_inputs_give_the_same_digest_and_pdf_but_for_identity_and_times(rebuilds):
    first, second = (read_json(r.run_dir / "metrics.json") for r in rebuilds)
    assert first["content_digest"] == second["content_digest"]

    assert neutral(pdf_text(rebuilds[0].run_dir / "report.pdf")) == neutral(
        pdf_text(rebuilds[1].run_dir / "report.pdf")
    )


def neutral(text: str) -> str:
    """Report text with run ids, clock times and stage durations blanked out."""
    text = re.sub(r"\d{8}-\d{6}-quick(-\d+)?", "RUN", text)
    # ISO stamps, and Babel's medium times at any hour: 0:41:03 (es), 12:41:03\u202fAM (en).
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.+-]+|\b\d{1,2}:\d\d:\d\d(\s?[AP]M)?", "TIME", text)
    return re.sub(r"TIME \d+(h\d\d)?(m\d\d)?s?", "TIME", text)


@pytest.mark.parametrize("lang", ["es", "en"])
@pytest.mark.parametrize("hour", [0, 9, 10, 23])
def test_neutral_text_ignores_the_clock_at_every_hour(lang, hour):
    from babel.dates import format_datetime

    one, other = (
        datetime(2026, 11, 27, hour, minute, second) for minute, second in ((41, 3), (7, 59))
    )
    line = "Inicio: {}. Fin."
    assert neutral(line.format(format_datetime(one, "medium", locale=lang))) == neutral(
        line.format(format_datetime(other, "medium", locale=lang))
    )
    assert neutral("0,0118") == "0,0118"  # numbers are not times


def test_same_config_same_numbers(quick_build, quick_reports_copy):
    """Determinism: training again from scratch gives the same metrics to the last digit."""
    again = quick_again(quick_reports_copy, retrain=True)
    assert read_json(again.run_dir / "metrics.json")["training"]["cache"]["reason"] == "retrain"
    now, before = results(again.run_dir), results(quick_build.run_dir)
    now.pop("comparison"), before.pop("comparison")
    assert now == before


def test_regression_writes_the_report_then_exits_1(quick_build, quick_reports_copy, tmp_path):
    better = read_json(quick_build.run_dir / "metrics.json")
    better["reconstruction"]["psnr_of_mean_mse"] += 1.0
    (tmp_path / "metrics.json").write_text(json.dumps(better), encoding="utf-8")
    with pytest.raises(QualityRegression, match="psnr_db") as raised:
        quick_again(quick_reports_copy, compare_to=tmp_path / "metrics.json")
    assert raised.value.exit_code == 1
    (run,) = set(quick_reports_copy.glob("2*")) - {quick_reports_copy / quick_build.run_dir.name}
    assert (run / "report.pdf").is_file() and "▼" in pdf_text(run / "report.pdf")
    assert read_json(run / "run.json")["regressions"] == ["psnr_db"]


def test_a_failing_notebook_leaves_failure_files_and_latest_alone(
    quick_reports_copy, tmp_path, monkeypatch
):
    out = quick_reports_copy
    latest = (out / "latest").resolve()
    # The lab notebook with a cell that fails after the parameters: a real cell in a real kernel.
    lab = nbformat.read(artifacts.LAB_NOTEBOOK, as_version=4)
    first = next(
        i for i, cell in enumerate(lab.cells) if "parameters" in cell.metadata.get("tags", [])
    )
    lab.cells.insert(first + 1, nbformat.v4.new_code_cell('raise ValueError("a cell that fails")'))
    nbformat.write(lab, tmp_path / "lab.ipynb")
    monkeypatch.setattr(artifacts, "LAB_NOTEBOOK", tmp_path / "lab.ipynb")
    with pytest.raises(RunError, match="failed with ValueError: a cell that fails"):
        quick_again(out)
    (failed,) = set(out.glob("2*")) - {latest}
    assert "stage: notebook" in (failed / "failure.log").read_text(encoding="utf-8")
    assert "a cell that fails" in (failed / "failure.html").read_text(encoding="utf-8")
    assert read_json(failed / "run.json")["status"] == "failed"
    assert (out / "latest").resolve() == latest


def test_compare_reuses_the_builds_lab_model_and_reports(quick_build, quick_reports_copy):
    """Typed as users do: in its own process, compare chooses oneDNN before TensorFlow starts,
    as the build chose it for its kernel, and so finds the build's lab model in the cache."""
    out = quick_reports_copy
    result = dae_report(
        "compare",
        "--profile",
        "quick",
        "--models",
        "lab,unet",
        "--data-dir",
        str(SUBSET_DIR),
        "--out",
        str(out),
        cwd=out.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = out.glob("*-compare")
    metrics = read_json(run / "metrics.json")
    lab, unet = metrics["models"]
    built = read_json(quick_build.run_dir / "metrics.json")
    assert lab["machine"]["onednn"]["used"] is built["environment"]["onednn"]["used"]
    assert lab["history"]["val_loss"] == built["training"]["val_loss"]
    assert unet["parameters"] > lab["parameters"] and len(unet["curve"]) == 7
    assert {p.stem for p in (run / "figures").glob("*.svg")} == {
        "models_loss_curves",
        "models",
        "models_generalisation",
    }
    assert "Comparación de modelos" in pdf_text(run / "report.pdf")
    assert (
        out / "latest"
    ).resolve().name == quick_build.run_dir.name  # a comparison is not a report run


def _restored_folder(out: Path) -> None:
    """reports/ as restoring CI artifacts leaves it: `latest` a real copy of a finished run
    (artifacts drop links), beside a `dae-report compare` run of the same profile."""
    (out / "latest").mkdir(parents=True)
    record = {
        "run_id": "20260101-000000-quick",
        "command": "build",
        "profile": "quick",
        "status": "finished",
    }
    (out / "latest" / "run.json").write_text(json.dumps(record), encoding="utf-8")
    (out / "latest" / "report.html").write_text("<p>the earlier report</p>", encoding="utf-8")
    comparison = out / "20260102-000000-compare"
    comparison.mkdir()
    record = {
        "run_id": comparison.name,
        "command": "compare",
        "profile": "quick",
        "status": "finished",
        "finished": "2026-01-02T00:00:00+00:00",
    }
    (comparison / "run.json").write_text(json.dumps(record), encoding="utf-8")
    (comparison / "metrics.json").write_text(
        json.dumps({"models": [{"name": "lab"}]}), encoding="utf-8"
    )


@pytest.mark.slow
def test_latest_restored_as_a_copy_is_replaced_and_a_comparison_is_no_baseline(tmp_path):
    out = tmp_path / "reports"
    _restored_folder(out)
    result = dae_report(
        "build", *TINY, "--data-dir", str(SUBSET_DIR), "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = set(out.glob("2*-quick")) - {out / "20260101-000000-quick"}
    assert (out / "latest").is_symlink() and (out / "latest").resolve() == run.resolve()
    # The copy was a finished run: it is kept under its own name, and the build said so.
    assert (out / "20260101-000000-quick" / "report.html").read_text(
        encoding="utf-8"
    ) == "<p>the earlier report</p>"
    note = (
        "      latest was a copy of run 20260101-000000-quick, not a link: "
        f"kept as 20260101-000000-quick/; latest → {run.name}"
    )
    assert note in result.stderr.splitlines()
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(".")) == [".cache"]
    assert (
        json.loads((run / "metrics.json").read_text(encoding="utf-8"))["comparison"] is None
    )  # not the comparison
    assert "--compare-to" not in result.stderr


@pytest.mark.parametrize(
    "latest",
    ["a folder of the user's", "a copy of a failed run", "a file"],
)
def test_latest_that_is_not_a_copy_of_a_run_fails_before_any_work(tmp_path, latest):
    out = tmp_path / "reports"
    out.mkdir()
    if latest == "a file":
        (out / "latest").write_text("notes", encoding="utf-8")
    else:
        (out / "latest").mkdir()
        (out / "latest" / "notes.txt").write_text("mine", encoding="utf-8")
        if latest == "a copy of a failed run":
            (out / "latest" / "run.json").write_text('{"status": "failed"}', encoding="utf-8")
    result = dae_report(
        "build", *TINY, "--data-dir", str(SUBSET_DIR), "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-3000:]
    kind = "file" if latest == "a file" else "folder"
    assert result.stderr == (
        f"dae-report: error: {out / 'latest'} is a {kind}, "
        "not a link to a run nor a copy of a finished one: "
        "move it away (a build points latest at its run)\n"
    )
    assert [path.name for path in out.iterdir()] == ["latest"]  # no run folder, no cache
