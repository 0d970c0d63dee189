"""Template tests: render the report from a real quick run's metrics and check the text."""

import copy
import re
from datetime import datetime, timedelta, timezone

import jinja2
import pytest
from pypdf import PdfReader

from pipeline import artifacts, report
from tests.conftest import RUN_SAMPLE_DIR

FIGURE_NAMES = [
    "samples",
    "class_distribution",
    "pixel_histogram",
    "normalised_samples",
    "clean_vs_noisy",
    "noise_histogram",
    "loss_curves",
    "denoising_grid",
    "extremes",
    "residual_maps",
    "mse_histogram",
    "anomalies",
    "baselines",
    "generalisation",
]

SECTION_TITLES = {
    "es": [
        "Objetivos",
        "0. Entorno y configuración",
        "1. Carga y exploración de Fashion-MNIST",
        "2. Normalización y preparación de datos",
        "3. Generación de imágenes ruidosas",
        "4. División en entrenamiento y validación",
        "5. El Denoising Autoencoder convolucional",
        "6. Compilación y entrenamiento",
        "7. Evaluación cualitativa",
        "8. Evaluación cuantitativa: error de reconstrucción",
        "9. Consideraciones y advertencias técnicas",
        "10. Más allá de la práctica",
        "Resumen",
    ],
    "en": [
        "Objectives",
        "0. Environment and configuration",
        "1. Loading and exploring Fashion-MNIST",
    ],
}


def sample_metrics() -> dict:
    """The committed quick run's metrics.json."""
    return artifacts.read_json(RUN_SAMPLE_DIR / "metrics.json")


def sample_values(lang="es"):
    config = artifacts.read_json(RUN_SAMPLE_DIR / "config.json")
    config["report"]["lang"] = lang
    return {
        "run": {
            "id": "20261125-120000-quick",
            "started": "25 nov 2026, 12:00:00",
            "created": "2026-11-25T12:00:00+00:00",
        },
        "provenance": None,
        "course": report.course(config, datetime(2026, 11, 25, 12, 0)),
        "config": config,
        "metrics": sample_metrics(),
        "figures": {name: f"data:image/svg+xml;base64,{name}" for name in FIGURE_NAMES},
    }


@pytest.fixture
def values():
    return sample_values()


def text_of(html: str) -> str:
    """What a reader sees: no tags, no style sheet, entities decoded, spaces collapsed."""
    import html as html_module

    body = re.sub(r"<style>.*?</style>", " ", html, flags=re.DOTALL)
    body = re.sub(r"</?(em|strong|b|code|sub|span|a)\b[^>]*>", "", body)  # inline: no space
    body = re.sub(r"<[^>]+>", " ", body)
    return re.sub(r"\s+", " ", html_module.unescape(body))


def test_every_section_figure_and_table_is_there(values):
    html = report.render_html(values)
    for title in SECTION_TITLES["es"]:
        assert f">{title}</h2>" in html
        assert f">{title}</a>" in html  # and in the table of contents
    for number, name in enumerate(FIGURE_NAMES, start=1):
        assert f"data:image/svg+xml;base64,{name}" in html
        assert f"<b>Figura {number}.</b>" in html
    assert "<b>Tabla 11.</b>" in html


def test_numbers_come_from_metrics_in_the_report_language(values):
    values["metrics"]["reconstruction"]["mse"]["mean"] = 0.011834
    values["metrics"]["model"]["parameters"] = 74497
    text = text_of(report.render_html(values))
    assert "0,0118" in text and "74.497" in text and "Sneaker" in text
    english = sample_values("en")
    english["metrics"]["reconstruction"]["mse"]["mean"] = 0.011834
    text = text_of(report.render_html(english))
    assert "0.0118" in text and "74,497" in text


def test_every_answer_is_in_the_report(values):
    text = text_of(report.render_html(values))
    noise = values["metrics"]["noise"]["effect"]
    assert f"pasa de {report.number(noise['clean']['std'], 3, locale='es')}" in text
    for question in (
        "¿Qué detalles se recuperan bien?",
        "¿Qué tipo de ruido persiste?",
        "¿Se observa suavizado excesivo (blur)?",
    ):
        assert text.count(question) == 2  # the lab's question and the answer that follows
    assert "percentil 99 del MSE en validación" in text
    assert "Esta ejecución no muestra sobreajuste" in text


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"overfit": True, "still_improving": False, "best_epoch": 12}, "sí muestra sobreajuste"),
        ({"overfit": False, "still_improving": True}, "baja hasta la última época"),
        ({"overfit": False, "still_improving": False}, "no muestra sobreajuste apreciable"),
    ],
)
def test_overfitting_answer_follows_the_verdict(change, expected):
    values = sample_values()
    values["metrics"]["training"]["overfitting"].update(change)
    assert expected in text_of(report.answer("overfitting", values["metrics"], "es"))


@pytest.mark.parametrize(
    "sharpness, expected",
    [(0.5, "Sí. Las reconstrucciones conservan el 50"), (0.97, "No de forma general")],
)
def test_blur_answer_follows_the_measure(sharpness, expected):
    metrics = sample_values()["metrics"]
    metrics["error_analysis"]["sharpness"] = sharpness
    assert expected in text_of(report.answer("blur", metrics, "es"))


@pytest.mark.parametrize(
    "sharpness, expected",
    [
        ([0.95] * 9 + [0.85], "Una clase queda por debajo del umbral: {0}, con un 85"),
        ([0.95] * 7 + [0.6, 0.5, 0.7], "3 de las 10 clases quedan por debajo del umbral."),
        ([0.8] * 9 + [0.5], "Todas las clases quedan por debajo del umbral."),
    ],
)
def test_blur_answer_counts_the_classes_below_and_names_the_worst(sharpness, expected):
    metrics = sample_values()["metrics"]
    rows = metrics["error_analysis"]["per_class"]
    for row, value in zip(rows, sharpness, strict=True):
        row["sharpness"] = value
    metrics["error_analysis"]["blur_threshold"] = 0.9
    text = text_of(report.answer("blur", metrics, "es"))
    worst = rows[-1]["name"] if sharpness[-1] == min(sharpness) else rows[-2]["name"]
    assert expected.format(worst) in text
    assert f"la que más, {worst}" in text or "Una clase" in expected
    assert text.count(", ") < 12  # not every class: the most blurred three at most


def test_answers_in_the_notebook_are_the_report_words(values):
    html = report.render_html(values)
    for name in ("noise", "overfitting", "details", "residual", "blur", "anomalies"):
        assert report.answer(name, values["metrics"], "es").strip() in html


def test_user_text_is_escaped(values):
    values["course"]["title"] = "<script>alert(1)</script> {{ metrics }}"
    values["course"]["course"] = '<img src=x onerror="alert(2)"> {% if 1 %}'
    html = report.render_html(values)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ metrics }}" in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt; {% if 1 %}" in html


def test_course_details_and_logo_on_the_cover(values, tmp_path):
    logo = tmp_path / "logo.svg"
    logo.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', encoding="utf-8"
    )
    values["config"]["report"].update(
        course="Aprendizaje profundo",
        instructor="Ana Pérez",
        institution="Uniminuto",
        date="1 de diciembre de 2026",
        logo=str(logo),
    )
    values["course"] = report.course(values["config"], datetime(2026, 11, 25))
    text = text_of(report.render_html(values))
    for expected in ("Aprendizaje profundo", "Ana Pérez", "Uniminuto", "1 de diciembre de 2026"):
        assert expected in text
    assert 'class="logo" src="data:image/svg+xml;base64,' in report.render_html(values)


def test_a_missing_value_is_an_error_not_a_blank(values):
    broken = copy.deepcopy(values)
    del broken["metrics"]["reconstruction"]["mse"]["median"]
    with pytest.raises(jinja2.UndefinedError, match="median"):
        report.render_html(broken)


def test_reduced_profile_is_flagged_on_the_cover(values):
    assert "no reproduce las cifras del laboratorio completo" in report.render_html(values)
    values["config"]["profile"] = "full"
    assert "no reproduce las cifras" not in report.render_html(values)


@pytest.mark.parametrize(
    "value, digits, locale, expected",
    [(0.011834, 4, "es", "0,0118"), (12345.678, 1, "es", "12.345,7"), (19.3, 2, "en", "19.30")],
)
def test_number_filter(value, digits, locale, expected):
    assert report.number(value, digits, locale=locale) == expected


@pytest.mark.parametrize(
    "value, digits, locale, expected",
    [
        (0.003981, 5, "es", "+0,00398"),
        (-0.000366, 5, "es", "-0,00037"),
        (0.0, 5, "es", "+0,00000"),
        (-0.0, 1, "en", "-0.0"),  # as "%+.1f" prints it
        (-1e-9, 5, "en", "-0.00000"),
        (11.1, 1, "en", "+11.1"),
    ],
)
def test_signed_filter(value, digits, locale, expected):
    assert report.signed(value, digits, locale=locale) == expected


def test_comparison_appendix_in_the_report_language():
    """Each row's state is gate.compare's verdict, and its change a signed number in the
    report's language (decimal comma in Spanish)."""
    values = sample_values()
    rows = values["metrics"]["comparison"]["rows"]
    rows[0].update(change=0.003981, relative_change=0.111, regressed=True, verdict="regressed")
    rows[1].update(change=-0.000366, relative_change=-0.0099, verdict="better")
    rows[4].update(change=0.00181, relative_change=0.005, verdict="worse_within_threshold")
    text = text_of(report.render_html(values))
    assert "+0,00398 (+11,1 %) 5,0% ▼ regresión" in text
    assert "-0,00037 (-1,0 %) 5,0% mejor" in text
    assert "+0,00000 (+0,0 %) 0,30 igual" in text
    assert "+0,00181 (+0,5 %) 2,0% peor, dentro del umbral" in text
    english = sample_values("en")
    english["metrics"]["comparison"]["rows"][1].update(change=-0.000366, relative_change=-0.0099)
    assert "-0.00037 (-1.0 %)" in text_of(report.render_html(english))


@pytest.mark.parametrize(
    "lang, expected",
    [
        ("es", "Selección de ruido. El tipo y la intensidad del ruido"),
        ("en", "Noise selection. The type and intensity of the noise"),
    ],
)
def test_the_labs_own_text_comes_from_the_notebook(lang, expected):
    """Section 9 and the notes are the lab notebook's cells, in the report's language."""
    html = report.render_html(sample_values(lang))
    assert expected in text_of(html)
    assert "<li><strong>" in html and "Sección 9 –" not in html and "Section 9 –" not in html


def test_context_reads_the_run_folder(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "loss_curves.svg").write_text("<svg/>", encoding="utf-8")
    for name in ("metrics.json", "config.json"):
        (tmp_path / name).write_bytes((RUN_SAMPLE_DIR / name).read_bytes())
    context = report.context(tmp_path, "run-1", datetime(2026, 11, 25, 9, 5))
    assert context["run"]["id"] == "run-1"
    assert context["course"]["date"] == "25 de noviembre de 2026"
    assert context["figures"]["loss_curves"] == "data:image/svg+xml;base64,PHN2Zy8+"
    assert context["metrics"]["model"]["parameters"] == 74497


# --- The PDF of a real build (the suite's shared quick build) ---


def pdf_date(text: str) -> datetime:
    """A PDF date, D:YYYYmmddHHMMSS then Z or ±HH'MM', as an aware datetime."""
    match = re.fullmatch(r"D:(\d{14})(?:(Z)|([+-])(\d\d)'(\d\d)'?)", text)
    assert match, text
    offset = timedelta(0) if match[2] else timedelta(hours=int(match[4]), minutes=int(match[5]))
    offset = -offset if match[3] == "-" else offset
    return datetime.strptime(match[1], "%Y%m%d%H%M%S").replace(tzinfo=timezone(offset))


def test_pdf_dates_are_the_runs_start(quick_build):
    """README: the PDF (and metrics.json and config.json attached in it) carry the run's start,
    so unchanged inputs give the same PDF apart from the run's identity."""
    started = datetime.fromisoformat(
        artifacts.read_json(quick_build.run_dir / "run.json")["started"]
    )
    reader = PdfReader(quick_build.run_dir / "report.pdf")
    assert pdf_date(reader.metadata["/CreationDate"]) == started
    assert pdf_date(reader.metadata["/ModDate"]) == started
    names = reader.trailer["/Root"]["/Names"]["/EmbeddedFiles"]["/Names"]
    attached = {
        name: spec.get_object()["/EF"]["/F"]["/Params"]
        for name, spec in zip(names[::2], names[1::2], strict=True)
    }
    assert sorted(attached) == ["config.json", "metrics.json"]
    for params in attached.values():
        assert pdf_date(params["/CreationDate"]) == pdf_date(params["/ModDate"]) == started


def test_the_contents_page_gives_the_page_each_section_starts_on(quick_build):
    reader = PdfReader(quick_build.run_dir / "report.pdf")
    pages = [page.extract_text().splitlines() for page in reader.pages]
    contents = next(number for number, lines in enumerate(pages) if "Índice" in lines)
    entries = [re.fullmatch(r"(.+?) ?\.{3,}\s*(\d+)", line) for line in pages[contents]]
    listed = {entry[1]: int(entry[2]) for entry in entries if entry}
    appendices = [
        "Anexo A. Comparación con una ejecución anterior",
        "Anexo B. Procedencia de la ejecución",
    ]
    assert list(listed) == SECTION_TITLES["es"] + appendices, pages[contents]
    for title, number in listed.items():  # the page (1-based) whose text first has the heading
        starts = next(
            index + 1 for index in range(contents + 1, len(pages)) if title in pages[index]
        )
        assert number == starts, title


@pytest.mark.parametrize(
    "lang, value, expected",
    [("es", 0.001, "0,001"), ("en", 0.001, "0.001"), ("es", 3e-4, "0,0003"), ("es", 2.0, "2")],
)
def test_a_setting_prints_as_given_in_the_locale(lang, value, expected):
    assert report.decimal(value, locale=lang) == expected


def test_the_spanish_report_writes_the_learning_rate_with_a_decimal_comma():
    html = report.render_html(sample_values("es"))
    assert "tasa de aprendizaje 0,001" in html and "tasa de aprendizaje 0.001" not in html


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("gaussian", "Gaussian, mean 0.0, standard deviation 0.40, clipped to [0, 1]"),
        ("speckle", "speckle (multiplicative), standard deviation 0.40, clipped to [0, 1]"),
        ("poisson", "Poisson, 10 photons at white"),
        ("salt_pepper", "salt and pepper, 10.0% of the pixels"),
    ],
)
def test_the_cover_names_the_noise_the_model_trained_on(kind, expected):
    values = sample_values("en")
    values["config"]["noise"]["type"] = kind
    assert f"Noise {expected}" in text_of(report.render_html(values))


def test_the_instructors_copy_is_marked_on_every_page_and_on_screen():
    values = sample_values("en")
    assert "do not distribute" not in report.render_html(values)
    values["config"]["report"]["instructor_copy"] = True
    html = report.render_html(values)
    assert '@page { @top-center { content: "Answer key: do not distribute"; } }' in html
    assert '<p class="instructor-copy">Answer key: do not distribute</p>' in html


@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        (
            {"setting": "auto", "used": "bfloat16", "basis": "cpu", "device": "AVX512_BF16"},
            "mixed_bfloat16 (automática, porque AVX512_BF16 calcula bfloat16 de forma nativa)",
        ),
        (
            {"setting": "auto", "used": "float32", "basis": "none", "device": ""},
            "float32 (automática: esta máquina no calcula bfloat16 de forma nativa",
        ),
        (
            {"setting": "float32", "used": "float32", "basis": "setting", "device": ""},
            "float32 (fijada en la configuración)",
        ),
    ],
)
def test_the_environment_table_says_which_precision_ran_and_why(values, precision, expected):
    policy = "mixed_bfloat16" if precision["used"] == "bfloat16" else "float32"
    values["metrics"]["environment"]["precision"] = {**precision, "policy": policy, "reason": ""}
    values["metrics"]["environment"]["jit_compile"] = {"setting": "auto", "used": True}
    text = text_of(report.render_html(values))
    assert expected in text
    assert "XLA sí (medido en esta máquina)" in text


@pytest.mark.parametrize(
    ("onednn", "expected"),
    [
        ({"setting": "auto", "used": True, "basis": "probe"}, "oneDNN sí (medido en esta máquina)"),
        ({"setting": False, "used": False, "basis": "setting"}, "oneDNN no (fijado en la config"),
        (
            {"setting": "auto", "used": False, "basis": "environment"},
            "oneDNN no (como dice TF_ENABLE_ONEDNN_OPTS en el entorno)",
        ),
    ],
)
def test_the_environment_table_says_whether_onednn_ran_and_why(values, onednn, expected):
    values["metrics"]["environment"]["onednn"] = {**onednn, "reason": "", "active": onednn["used"]}
    assert expected in text_of(report.render_html(values))


def test_a_run_from_before_onednn_was_chosen_renders_without_its_row(values):
    del values["metrics"]["environment"]["onednn"]
    text = text_of(report.render_html(values))
    assert "oneDNN" not in text and "XLA no" in text


@pytest.mark.parametrize(
    ("model", "said", "not_said"),
    [
        ("lab", "The model is undercomplete (it reduces the resolution to 7 × 7 × 64)", "U-Net"),
        ("unet", "The model is not undercomplete: although its bottom", "model is undercomplete"),
        ("residual", "it can fall slightly outside [0, 1]", "sigmoid"),
    ],
)
def test_section_5_describes_the_model_this_run_trained(model, said, not_said):
    values = sample_values("en")
    values["config"]["model"]["name"] = model
    text = text_of(report.render_html(values))
    start = text.rindex("5. The convolutional Denoising Autoencoder")  # after the contents
    section = text[start : text.index("6. Compilation and training", start)]
    assert said in section
    assert not_said not in section
