"""Every word a reader sees is in the chosen language: catalogs complete, nothing left over."""

import re

import nbformat
import pytest
from babel.messages.pofile import read_po, write_po
from pypdf import PdfReader

from pipeline import i18n, notebook, report
from pipeline.config import Config, load_config
from tests.conftest import SUBSET_DIR, TINY, assert_finished, dae_report
from tests.test_report import sample_values, text_of

# Words that only one of the two languages uses: a left-over string shows up as one of them. A
# word joined to a name's characters (answer-key.ipynb, train-images-idx3, "training": in a
# config) is part of a file name or key, the same in every language.
NOT_IN_A_NAME = r"(?<![\w\-./\"])(%s)(?![\w\-./\"])"
SPANISH = re.compile(
    r"[áéíóúñ¿¡]|" + NOT_IN_A_NAME % r"el|la|los|las|del|con|para|por|una|imágenes|época|"
    r"entrenamiento|sección|respuesta|figura|tabla|que",
    re.IGNORECASE,
)
ENGLISH = re.compile(
    NOT_IN_A_NAME % r"the|and|of|with|images|training|epoch|section|answer|figure|table|which|this|"
    r"your",
    re.IGNORECASE,
)
LEFT_OVER = {"es": ENGLISH, "en": SPANISH}


def _visible(message: str) -> str:
    """A message as a reader sees it: no code, no placeholders (%(name)s), no `code`."""
    return re.sub(r"`[^`]*`|%\(\w+\)s", " ", _without_code(message))


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_no_message_is_left_untranslated(lang):
    """Every message the templates, notebook and package show reaches the reader in `lang`:
    English's catalog translates each one, and Spanish, the source language, shows each message
    id as written, so every id must itself be Spanish."""
    assert i18n.untranslated(lang) == []
    shown = i18n.gettext(lang)
    for message, where in i18n.messages():
        if lang == i18n.SOURCE_LANGUAGE:
            assert shown(message) == message, where
        assert _leftovers(_visible(shown(message)), lang) == [], where


def test_untranslated_finds_empty_fuzzy_and_missing_messages(tmp_path, monkeypatch):
    """A copy of the English catalog with one message emptied, one fuzzy and one removed."""
    with i18n._path("en").open("rb") as handle:
        catalog = read_po(handle, locale="en", domain=i18n.DOMAIN)
    emptied, fuzzy, removed = list(dict.fromkeys(message for message, _ in i18n.messages()))[:3]
    catalog[emptied].string = ""
    catalog[fuzzy].flags.add("fuzzy")
    del catalog[removed]
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path / "locale")
    i18n._path("en").parent.mkdir(parents=True)
    with i18n._path("en").open("wb") as handle:
        write_po(handle, catalog)
    found = i18n.untranslated("en")  # a message used in two places is listed twice
    assert list(dict.fromkeys(found)) == [emptied, fuzzy, removed]


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
    config = load_config("full", overrides=[f"report.lang={lang}"])
    for source in (notebook.lab(config), notebook.handout(config)):
        markdown = " ".join(cell.source for cell in source.cells if cell.cell_type == "markdown")
        assert _leftovers(re.sub(r"`[^`]*`", " ", markdown), lang) == []


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_handout_page_is_in_its_language(lang):
    from datetime import datetime

    config = sample_values(lang)["config"]
    html = report.render_handout(
        notebook.handout(Config.from_dict(config)), config, datetime(2026, 11, 25)
    )
    visible = text_of(_without_code(html))
    assert _leftovers(visible, lang) == []


def test_the_leftover_check_can_fail():
    assert _leftovers("Figure 3. The training loss", "es") == ["Figure", "The", "training"]
    assert _leftovers("Figura 3: la pérdida", "en") == ["Figura", "la", "é"]
    # names are not words, words beside names still are
    assert _leftovers('answer-key.ipynb, train-images-idx3-ubyte.gz, "training": 2', "es") == []
    assert _leftovers("see the answer-key.ipynb (training)", "es") == ["the", "training"]
    assert _leftovers("ver la_figura, con.py: con", "en") == ["con"]


# A real build in each language: what a reader opens.


def _pdf_text(path) -> str:
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in PdfReader(path).pages))


def _answer_key_text(path) -> str:
    """What the answer key shows a reader: its markdown, and what its cells printed and displayed
    (HTML as its text). Code, like a file name, is the same in every language; so is what Keras
    prints while it fits (`Epoch 1/2`, `17/17 - 1s - loss: …`), as the lab's own key shows it."""
    parts = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "markdown":
            parts.append(re.sub(r"`[^`]*`", " ", cell.source))
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                parts.append(re.sub(r"(?m)^(Epoch \d+/\d+|\d+/\d+ - .*)$", " ", output.text))
            elif "text/html" in output.get("data", {}):
                parts.append(text_of(_without_code(output.data["text/html"])))
    return " ".join(parts)


def _without_notebook_code(text: str, notebook_path) -> str:
    """A printed notebook's text less its code: each code line is removed once, as printed."""
    for cell in nbformat.read(notebook_path, as_version=4).cells:
        if cell.cell_type == "code":
            for line in cell.source.splitlines():
                line = re.sub(r"\s+", " ", line).strip()
                if line:
                    text = text.replace(line, " ", 1)
    return text


def _leftovers_in_run(run, lang) -> dict[str, list[str]]:
    handout = _without_notebook_code(_pdf_text(run / "handout.pdf"), run / "handout.ipynb")
    return {
        "answer-key.ipynb": _leftovers(_answer_key_text(run / "answer-key.ipynb"), lang),
        "report.pdf": _leftovers(_pdf_text(run / "report.pdf"), lang),
        "handout.pdf": _leftovers(handout, lang),
    }


NOTHING_LEFT_OVER = {"answer-key.ipynb": [], "report.pdf": [], "handout.pdf": []}


@pytest.mark.slow
def test_an_english_build_writes_no_spanish(tmp_path):
    """`dae-report build --lang en --handout` (tiny data, one epoch), as the README promises."""
    arguments = ["build", *TINY, "--lang", "en", "--handout", "--data-dir", str(SUBSET_DIR)]
    result = dae_report(*arguments, cwd=tmp_path)
    run = assert_finished(tmp_path / "reports", result)
    assert _leftovers_in_run(run, "en") == NOTHING_LEFT_OVER


@pytest.mark.slow
def test_a_spanish_build_writes_no_english(quick_build):
    """The shared `dae-report build --profile quick --handout`: Spanish, the default."""
    assert _leftovers_in_run(quick_build.run_dir, "es") == NOTHING_LEFT_OVER


def test_unknown_language_is_bad_input():
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown language 'fr'"):
        i18n.translations("fr")
