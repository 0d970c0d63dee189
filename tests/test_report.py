"""Template tests: render the report from a real quick run's metrics and check the text."""

import copy
from datetime import datetime

import jinja2
import pytest

from pipeline import artifacts, report
from tests.conftest import RUN_SAMPLE_DIR

FIGURE_NAMES = [
    "samples", "class_distribution", "pixel_histogram", "normalised_samples", "clean_vs_noisy",
    "noise_histogram", "loss_curves", "denoising_grid", "mse_histogram",
]  # fmt: skip

SECTION_TITLES = [
    "Objetivos", "0. Entorno y configuración", "1. Carga y exploración de Fashion-MNIST",
    "2. Normalización y preparación de datos", "3. Generación de imágenes ruidosas",
    "4. División en entrenamiento y validación", "5. El Denoising Autoencoder convolucional",
    "6. Compilación y entrenamiento", "7. Evaluación cualitativa",
    "8. Evaluación cuantitativa: error de reconstrucción",
    "9. Consideraciones y advertencias técnicas", "Resumen",
]  # fmt: skip


@pytest.fixture
def values():
    return {
        "run": {"id": "20261125-120000-quick", "date": "25 de noviembre de 2026, 12:00"},
        "config": artifacts.read_json(RUN_SAMPLE_DIR / "config.json"),
        "metrics": artifacts.read_json(RUN_SAMPLE_DIR / "metrics.json"),
        "figures": {name: f"data:image/svg+xml;base64,{name}" for name in FIGURE_NAMES},
    }


def test_every_section_figure_and_table_is_there(values):
    html = report.render_html(values)
    for title in SECTION_TITLES:
        assert f">{title}</h2>" in html
        assert f">{title}</a>" in html  # and in the table of contents
    for number, name in enumerate(FIGURE_NAMES, start=1):
        assert f"data:image/svg+xml;base64,{name}" in html
        assert f"<b>Figura {number}.</b>" in html
    assert "<b>Tabla 9.</b>" in html


def test_numbers_come_from_metrics_in_spanish_format(values):
    values["metrics"]["evaluation"]["mse"]["mean"] = 0.011834
    values["metrics"]["model"]["parameters"] = 74497
    html = report.render_html(values)
    assert "0,0118" in html
    assert "74.497" in html
    assert "Sneaker" in html


def test_user_text_is_escaped(values):
    values["config"]["report"]["title"] = "<script>alert(1)</script> {{ metrics }}"
    html = report.render_html(values)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ metrics }}" in html


def test_a_missing_value_is_an_error_not_a_blank(values):
    broken = copy.deepcopy(values)
    del broken["metrics"]["evaluation"]["mse"]["median"]
    with pytest.raises(jinja2.UndefinedError, match="median"):
        report.render_html(broken)


def test_reduced_profile_is_flagged_on_the_cover(values):
    assert "no reproduce las cifras del laboratorio completo" in report.render_html(values)
    values["config"]["profile"] = "full"
    assert "no reproduce las cifras" not in report.render_html(values)


@pytest.mark.parametrize(
    "value, digits, expected",
    [(0.011834, 4, "0,0118"), (12345.678, 1, "12.345,7"), (19.3, 2, "19,30")],
)
def test_number_filter(value, digits, expected):
    assert report.number(value, digits) == expected


def test_context_reads_the_run_folder(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "loss_curves.svg").write_text("<svg/>")
    for name in ("metrics.json", "config.json"):
        (tmp_path / name).write_bytes((RUN_SAMPLE_DIR / name).read_bytes())
    context = report.context(tmp_path, "run-1", datetime(2026, 11, 25, 9, 5))
    assert context["run"] == {"id": "run-1", "date": "25 de noviembre de 2026, 09:05"}
    assert context["figures"]["loss_curves"] == "data:image/svg+xml;base64,PHN2Zy8+"
    assert context["metrics"]["model"]["parameters"] == 74497
