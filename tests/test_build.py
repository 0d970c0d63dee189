"""One end-to-end build of the quick profile on the committed real subset."""

import json
import re

import nbformat
import pytest
from pypdf import PdfReader

from pipeline import artifacts
from pipeline.build import build, create_run_dir, mark_latest
from pipeline.config import load_config
from tests.conftest import RUN_SAMPLE_DIR, SUBSET_DIR
from tests.test_report import SECTION_TITLES


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    result = build(config=load_config("quick"), out_dir=out, data_dir=SUBSET_DIR)
    return result


def test_run_folder_holds_every_artifact(finished_run):
    run = finished_run.run_dir
    for name in ("report.html", "report.pdf", "answer-key.ipynb", "metrics.json", "config.json", "model.keras"):
        assert (run / name).stat().st_size > 0, name
    assert len(list((run / "figures").glob("*.png"))) == 9
    assert len(list((run / "figures").glob("*.svg"))) == 9
    assert (run.parent / "latest").resolve() == run.resolve()
    assert not (run / artifacts.FAILURE_LOG).exists()


def test_pdf_has_every_section_and_several_pages(finished_run):
    reader = PdfReader(finished_run.run_dir / "report.pdf")
    assert len(reader.pages) == finished_run.pages >= 8
    text = re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))
    for title in SECTION_TITLES:
        assert title in text, title
    for word in ("Fashion-MNIST", "gaussiano", "Sneaker", "Figura 9.", "Índice"):
        assert word in text, word
    assert "1 / " in text and f"{len(reader.pages)} / {len(reader.pages)}" in text  # page numbers


def test_html_embeds_its_images(finished_run):
    html = (finished_run.run_dir / "report.html").read_text()
    assert html.count('src="data:image/svg+xml;base64,') == 9
    assert not re.search(r'<img[^>]+src="(?!data:)', html)


def test_answer_key_ran_without_errors(finished_run):
    answer_key = nbformat.read(finished_run.run_dir / "answer-key.ipynb", as_version=4)
    nbformat.validate(answer_key)
    code = [cell for cell in answer_key.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 9
    printed = "".join(o.get("text", "") for o in outputs)
    assert "Forma de x_train: (4000, 28, 28)" in printed and "epoch 2/2" in printed


def test_metrics_hold_the_numbers(finished_run):
    metrics = json.loads((finished_run.run_dir / "metrics.json").read_text())
    assert metrics["split"] == {"val_fraction": 0.1, "train": 3600, "validation": 400, "test": 1000}
    assert metrics["model"]["parameters"] == 74497
    assert len(metrics["training"]["loss"]) == len(metrics["training"]["val_loss"]) == 2
    evaluation = metrics["evaluation"]
    assert 0 < evaluation["mse"]["min"] <= evaluation["mse"]["median"] <= evaluation["mse"]["max"]
    # Even two epochs on 3 600 images must beat the noisy input.
    assert evaluation["mse"]["mean"] < evaluation["noisy_input"]["mse"]["mean"]
    config = json.loads((finished_run.run_dir / "config.json").read_text())
    assert config["profile"] == "quick" and config["seed"] == 123


def test_sample_metrics_used_by_template_tests_match_a_real_run(finished_run):
    """tests/data/run/metrics.json stands in for a run in test_report; keep its shape real."""

    def shape(value):
        if isinstance(value, dict):
            return {key: shape(item) for key, item in value.items()}
        return type(value).__name__

    real = json.loads((finished_run.run_dir / "metrics.json").read_text())
    sample = json.loads((RUN_SAMPLE_DIR / "metrics.json").read_text())
    assert shape(sample) == shape(real)


def test_run_folders_never_collide(tmp_path):
    from datetime import datetime

    moment = datetime(2026, 1, 2, 3, 4, 5)
    first, second = create_run_dir(tmp_path, moment, "quick"), create_run_dir(tmp_path, moment, "quick")
    assert first.name == "20260102-030405-quick" and second.name == "20260102-030405-quick-2"
    mark_latest(first)
    mark_latest(second)
    assert (tmp_path / "latest").resolve() == second.resolve()
