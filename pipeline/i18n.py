"""Languages: gettext message catalogs read with Babel, for the templates, notebook and figures.

Spanish, the lab's language, is the source: message ids are the Spanish text, and
templates/locale/<lang>/LC_MESSAGES/messages.po translates them. Catalogs are compiled in
memory when first used, so there is no .mo file to build or to forget.

    python -m pipeline.i18n update   # add new messages to every catalog (keeps translations)
    python -m pipeline.i18n check    # list messages a catalog does not translate
"""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import NullTranslations, Translations

from pipeline import artifacts

SOURCE_LANGUAGE = "es"  # the lab's language
LANGUAGES = ("es", "en")  # the source, then each with a catalog in templates/locale
LOCALE_DIR = artifacts.TEMPLATES_DIR / "locale"
DOMAIN = "messages"


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The catalog for `lang` (the source language translates to itself)."""
    if lang not in LANGUAGES:
        from pipeline.errors import ConfigError

        raise ConfigError(f"unknown language '{lang}' (choose one of: {', '.join(LANGUAGES)})")
    if lang == SOURCE_LANGUAGE:
        return NullTranslations()
    catalog = _read(lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def gettext(lang: str) -> Callable[[str], str]:
    """`_ = gettext(lang)`, for notebook cells and figure labels."""
    return translations(lang).gettext


def _path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def _read(lang: str) -> Catalog:
    with _path(lang).open("rb") as handle:
        return read_po(handle, locale=lang, domain=DOMAIN)


# --- Extraction: every message the templates, the lab notebook and the package show ---


def messages() -> Iterator[tuple[str, str]]:
    """(message id, where it comes from) for every translatable text."""
    method_map = [("**.j2", "jinja2"), ("**.py", "python")]
    options = {"**.j2": {"trimmed": "true", "extensions": "jinja2.ext.i18n"}}
    for folder in (artifacts.TEMPLATES_DIR, artifacts.PACKAGE_DIR):
        for path in sorted(folder.rglob("*")):
            pattern = next((p for p, method in method_map if path.match(p)), None)
            if pattern is None or "locale" in path.parts:
                continue
            method = dict(method_map)[pattern]
            with path.open("rb") as handle:
                for line, message, _comments, _context in extract(
                    _extractor(method), handle, options=options.get(pattern, {})
                ):
                    if isinstance(message, str):
                        yield message, f"{path.name}:{line}"
    yield from notebook_messages(artifacts.LAB_NOTEBOOK)


def notebook_messages(path: Path) -> Iterator[tuple[str, str]]:
    """Markdown cells are translated whole; code cells contribute their `_("…")` strings,
    comments and docstrings; the parameters cell, its title and comments."""
    import nbformat

    from pipeline import notebook as lab_notebook

    notebook = nbformat.read(path, as_version=4)
    for index, cell in enumerate(notebook.cells):
        where = f"{path.name}:cell {index}"
        if cell.cell_type == "markdown":
            yield cell.source, where
        elif lab_notebook.PARAMETERS in cell.metadata.get("tags", []):
            for message in (
                lab_notebook.PARAMETERS_TITLE,
                *lab_notebook.CONSTANT_COMMENTS.values(),
            ):
                yield message, where
        elif cell.cell_type == "code":
            for message in lab_notebook.code_messages(cell.source):
                yield message, where
    yield lab_notebook.PLACEHOLDER, "handout"


def _extractor(method: str):
    if method == "jinja2":
        from jinja2.ext import babel_extract

        return babel_extract
    return "python"


def update() -> None:
    """Add new messages to every catalog, keep translations, drop messages no longer used."""
    found = list(messages())
    for lang in LANGUAGES:
        if lang == SOURCE_LANGUAGE:
            continue
        old = _read(lang) if _path(lang).exists() else Catalog(locale=lang, domain=DOMAIN)
        new = Catalog(locale=lang, domain=DOMAIN, project="dae-report", fuzzy=False)
        for message, where in found:
            previous = old.get(message)
            new.add(message, previous.string if previous else "", locations=[(where, None)])
        _path(lang).parent.mkdir(parents=True, exist_ok=True)
        with _path(lang).open("wb") as handle:
            write_po(
                handle, new, width=100, omit_header=False, sort_output=False, include_lineno=False
            )


def untranslated(lang: str) -> list[str]:
    """Messages shown to users that `lang`'s catalog leaves empty, fuzzy or lacks."""
    if lang == SOURCE_LANGUAGE:
        return []
    catalog = _read(lang)
    missing = []
    for message, _where in messages():
        entry = catalog.get(message)
        if entry is None or not entry.string or entry.fuzzy:
            missing.append(message)
    return missing


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "check"
    if command == "update":
        update()
    for lang in LANGUAGES:
        for message in untranslated(lang):
            print(f"{lang}: untranslated: {message[:70]!r}")
