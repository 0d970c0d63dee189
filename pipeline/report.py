"""Render the report from what the run saved: metrics.json, config.json and figures/.

Compute → structure → render: the numbers are already in metrics.json; this module builds one
plain context dict from the run folder, Jinja2 renders it (templates hold all the prose), and
WeasyPrint prints the same HTML to PDF.
"""

from __future__ import annotations

import base64
from datetime import datetime
from pathlib import Path

import jinja2
from babel.dates import format_datetime
from babel.numbers import format_decimal, format_percent

from pipeline import artifacts
from pipeline.progress import format_duration

LOCALE = "es"


def number(value: float, digits: int = 4) -> str:
    """A decimal with `digits` significant fraction digits in the report's locale: 0,0118."""
    return format_decimal(value, format=f"#,##0.{'0' * digits}", locale=LOCALE)


def integer(value: int) -> str:
    return format_decimal(value, format="#,##0", locale=LOCALE)


def percent(value: float, digits: int = 1) -> str:
    return format_percent(value, format=f"#,##0.{'0' * digits} %", locale=LOCALE)


def shape(values) -> str:
    return " × ".join(str(v) for v in values)


def environment() -> jinja2.Environment:
    """The one Jinja2 environment: autoescape on, a missing value is an error, not a blank."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(artifacts.TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        number=number, integer=integer, percent=percent, shape=shape, duration=format_duration
    )
    return env


def data_uri(path: Path) -> str:
    media = {".svg": "image/svg+xml", ".png": "image/png"}[path.suffix]
    return f"data:{media};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def context(run_dir: Path, run_id: str, started: datetime) -> dict:
    """Everything the template shows, read from the run folder."""
    figures_dir = run_dir / artifacts.FIGURES
    return {
        "run": {
            "id": run_id,
            "date": format_datetime(started, "d 'de' MMMM 'de' y, HH:mm", locale=LOCALE),
        },
        "config": artifacts.read_json(run_dir / artifacts.CONFIG),
        "metrics": artifacts.read_json(run_dir / artifacts.METRICS),
        # SVG: vector charts, and the image grids keep their pixels crisp at any zoom.
        "figures": {path.stem: data_uri(path) for path in sorted(figures_dir.glob("*.svg"))},
    }


def render_html(values: dict) -> str:
    return environment().get_template("report.html.j2").render(values)


def write_pdf(html: str, output: Path, base_dir: Path) -> int:
    """Print the HTML to PDF; returns the number of pages."""
    import weasyprint

    document = weasyprint.HTML(string=html, base_url=str(base_dir)).render()
    artifacts.write_bytes(output, document.write_pdf())
    return len(document.pages)
