"""Every word a reader sees is in the chosen language: catalogs complete, nothing left over."""

import re

import pytest

from pipeline import i18n, notebook, report
from tests.test_report import sample_values, text_of

# Words that only one of the two languages uses: a left-over string shows up as one of them.
SPANISH = re.compile(
    r"[áéíóúñ¿¡]|\b(el|la|los|las|del|con|para|por|una|imágenes|época|entrenamiento|sección|"
    r"respuesta|figura|tabla|que)\b",
    re.IGNORECASE,
)
ENGLISH = re.compile(
    r"\b(the|and|of|with|images|training|epoch|section|answer|figure|table|which|this|your)\b",
    re.IGNORECASE,
)
LEFT_OVER = {"es": ENGLISH, "en": SPANISH}


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_no_message_is_left_untranslated(lang):
    assert i18n.untranslated(lang) == []


def test_translations_keep_their_placeholders():
    catalog = i18n._read("en")
    for message in catalog:
        if message.id:
            placeholders = set(re.findall(r"%\(\w+\)s", message.id))
            assert placeholders == set(re.findall(r"%\(\w+\)s", message.string)), message.id


def _without_code(html: str) -> str:
    """Code (file names, identifiers) is the same in every language."""
    return re.sub(r"<code>.*?</code>|<pre.*?</pre>", " ", html, flags=re.DOTALL)


def _leftovers(text: str, lang: str) -> list[str]:
    return sorted({match.group(0) for match in LEFT_OVER[lang].finditer(text)})


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_report_is_entirely_in_its_language(lang):
    text = text_of(_without_code(report.render_html(sample_values(lang))))
    assert _leftovers(text, lang) == []


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_notebook_and_handout_markdown_are_in_their_language(lang):
    for source in (notebook.lab(lang), notebook.handout(lang)):
        markdown = " ".join(cell.source for cell in source.cells if cell.cell_type == "markdown")
        assert _leftovers(re.sub(r"`[^`]*`", " ", markdown), lang) == []


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_handout_page_is_in_its_language(lang):
    from datetime import datetime

    config = sample_values(lang)["config"]
    html = report.render_handout(notebook.handout(lang), config, datetime(2026, 11, 25))
    visible = text_of(_without_code(html))
    assert _leftovers(visible, lang) == []


def test_the_leftover_check_can_fail():
    assert _leftovers("Figure 3. The training loss", "es") == ["Figure", "The", "training"]
    assert _leftovers("Figura 3: la pérdida", "en") == ["Figura", "la", "é"]


def test_unknown_language_is_bad_input():
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown language 'fr'"):
        i18n.translations("fr")
