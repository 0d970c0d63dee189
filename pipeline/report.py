"""Render the report (and the handout) from what the run saved.

Compute → structure → render: the numbers are already in metrics.json; this module builds one
plain context dict from the run folder, the templates get what they derive from it (verdicts,
rankings, shares, changes) from pipeline.view, Jinja2 renders it (templates hold all the prose,
in gettext catalogs for each language) with the locale's number filters, and WeasyPrint prints
the same HTML to PDF.
"""

from __future__ import annotations

import base64
import functools
import math
import mimetypes
from datetime import datetime
from pathlib import Path

import jinja2
import markupsafe
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal, format_percent

from pipeline import artifacts, i18n, logo, view
from pipeline.progress import format_duration


def number(value: float, digits: int = 4, *, locale: str) -> str:
    """A decimal with `digits` fraction digits in the locale: 0,0118 (es), 0.0118 (en)."""
    return format_decimal(value, format=f"#,##0.{'0' * digits}", locale=locale)


def decimal(value: float, *, locale: str) -> str:
    """A setting as given, in the locale, without padding: 0,001 (es), 0.001 (en), 0,0003."""
    return format_decimal(value, format="#,##0.############", locale=locale)


def signed(value: float, digits: int = 4, *, locale: str) -> str:
    """A change with its sign, always: +0,00012 and -0,3 (es), +0.00012 (en). Negative zero
    keeps its minus sign, as Python's "%+f" does."""
    sign = "-" if math.copysign(1.0, value) < 0 else "+"
    return sign + number(abs(value), digits, locale=locale)


def integer(value: int, *, locale: str) -> str:
    return format_decimal(value, format="#,##0", locale=locale)


def percent(value: float, digits: int = 1, *, locale: str) -> str:
    pattern = f"#,##0.{'0' * digits}%" if digits else "#,##0%"
    return format_percent(value, format=pattern, locale=locale)


def shape(values) -> str:
    return " × ".join(str(v) for v in values)


@functools.cache
def environment(lang: str = i18n.SOURCE_LANGUAGE) -> jinja2.Environment:
    """The Jinja2 environment of one language: autoescape on, a missing value is an error
    (not a blank), gettext from the language's catalog, numbers in its format."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(artifacts.TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        # No trim_blocks: the line break after a block tag is what separates two sentences
        # written on consecutive lines ({% endtrans %} then {% if %}).
        lstrip_blocks=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.policies["ext.i18n.trimmed"] = True  # msgids without the template's line breaks
    env.install_gettext_translations(i18n.translations(lang), newstyle=True)
    env.filters.update(
        number=functools.partial(number, locale=lang),
        decimal=functools.partial(decimal, locale=lang),
        signed=functools.partial(signed, locale=lang),
        integer=functools.partial(integer, locale=lang),
        percent=functools.partial(percent, locale=lang),
        shape=shape,
        duration=format_duration,
    )
    env.globals["lang"] = lang
    # What each template shows of the metrics, decided in Python (pipeline.view); the lab's own
    # prose, from the lab notebook, where the report repeats it.
    env.globals.update(
        report_view=view.report,
        answers_view=view.answers,
        comparison_view=view.comparison,
        lab_text=functools.partial(lab_text, lang=lang),
    )
    return env


def data_uri(path: Path) -> str:
    media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{media};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def logo_uri(path: Path) -> str:
    """The logo as a data URI, checked again as the config checked it (pipeline.logo: the file
    may have changed since). An SVG's own references are then fetched (or refused) by the
    confined fetcher like anything else."""
    return logo.data_uri(path)


def course(config: dict, started: datetime) -> dict:
    """The cover's course details: the user's text as given (escaped when rendered)."""
    details = config["report"]
    return {
        "title": details["title"],
        "course": details["course"],
        "instructor": details["instructor"],
        "institution": details["institution"],
        "date": details["date"] or format_date(started, "long", locale=details["lang"]),
        "logo": logo_uri(Path(details["logo"])) if details["logo"] else None,
    }


def context(run_dir: Path, run_id: str, started: datetime, provenance: dict | None = None) -> dict:
    """Everything the report shows, read from the run folder (and, for the appendix, the
    build's own record: stage times, versions, commit, cache decisions)."""
    config = artifacts.read_json(run_dir / artifacts.CONFIG)
    lang = config["report"]["lang"]
    return {
        "run": {
            "id": run_id,
            "started": format_datetime(started, "medium", locale=lang),
            "created": started.isoformat(timespec="seconds"),  # the PDF's own dates
        },
        "provenance": provenance,
        "course": course(config, started),
        "config": config,
        "metrics": artifacts.read_json(run_dir / artifacts.METRICS),
        # SVG: vector charts, and the image grids keep their pixels crisp at any zoom.
        "figures": {
            path.stem: data_uri(path)
            for path in sorted((run_dir / artifacts.FIGURES).glob("*.svg"))
        },
    }


def render_html(values: dict) -> str:
    lang = values["config"]["report"]["lang"]
    return environment(lang).get_template("report.html.j2").render(values)


def answer(name: str, metrics: dict, lang: str) -> str:
    """One answer of templates/answers.html.j2, for the notebook: the report's own words."""
    module = environment(lang).get_template("answers.html.j2").make_module({"metrics": metrics})
    return str(getattr(module, name)())


def confined_fetcher(*folders: Path):
    """A WeasyPrint URL fetcher that loads data: URIs and files inside `folders` only: no
    network, no other local path, whatever a title, a logo or an injected tag points at."""
    import weasyprint

    roots = [Path(folder).resolve() for folder in folders]

    class ConfinedFetcher(weasyprint.URLFetcher):
        def fetch(self, url, headers=None):
            scheme = url.split(":", 1)[0].lower()
            if scheme == "data":
                return super().fetch(url, headers)
            if scheme == "file":
                from urllib.parse import unquote, urlparse

                path = Path(unquote(urlparse(url).path)).resolve()
                if any(path.is_relative_to(root) for root in roots):
                    return super().fetch(url, headers)
            REFUSED.append(url)
            raise ValueError(f"dae-report loads no resource outside the run folder: {url}")

    return ConfinedFetcher(allowed_protocols=("data", "file"))


REFUSED: list[str] = []  # URLs the last renderings refused, for the tests and the log


def write_pdf(
    html: str,
    output: Path,
    base_dir: Path,
    attachments: list[Path] = (),
    created: datetime | None = None,
) -> int:
    """Print the HTML to PDF, with `attachments` embedded; returns the number of pages.

    Only data: URIs and files in `base_dir` and the templates can be loaded. The PDF's dates
    come from `created` (the run's start, through the HTML's dcterms meta and here), so
    unchanged inputs give the same PDF apart from the run's identity."""
    import weasyprint

    fetcher = confined_fetcher(base_dir, artifacts.TEMPLATES_DIR)
    files = [
        weasyprint.Attachment(filename=str(path), name=path.name, created=created, modified=created)
        for path in attachments
    ]
    document = weasyprint.HTML(string=html, base_url=str(base_dir), url_fetcher=fetcher).render()
    artifacts.write_bytes(output, document.write_pdf(attachments=files))
    return len(document.pages)


def render_failure(run_id: str, stage: str | None, message: str, log: list[str], lang: str) -> str:
    values = {"run_id": run_id, "stage": stage, "message": message, "log": log}
    return environment(lang).get_template("failure.html.j2").render(values)


def markdown_html(text: str) -> markupsafe.Markup:
    """Notebook markdown as HTML: CommonMark and tables, raw HTML in it escaped."""
    from markdown_it import MarkdownIt

    markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
    return markupsafe.Markup(markdown.render(text))


@functools.cache
def lab_text(cell_id: str, *, lang: str) -> markupsafe.Markup:
    """A markdown cell of the lab notebook that the report repeats (pipeline.notebook.passage),
    in `lang`, as HTML: the notebook is the text's one home, its catalog entry its one msgid."""
    from pipeline import notebook

    return markdown_html(notebook.passage(cell_id, lang))


def render_handout(notebook, config: dict, started: datetime) -> str:
    """The handout notebook as a printable page: markdown cells rendered, code cells boxed."""
    cells = [
        {"kind": "markdown", "html": markdown_html(cell.source)}
        if cell.cell_type == "markdown"
        else {"kind": "code", "source": cell.source}
        for cell in notebook.cells
    ]
    lang = config["report"]["lang"]
    values = {"course": course(config, started), "cells": cells}
    return environment(lang).get_template("handout.html.j2").render(values)
