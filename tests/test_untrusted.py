"""User text is data, never markup; the PDF loads nothing from outside the run; its fonts are
embedded and have every Spanish glyph."""

import re
from datetime import datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from pipeline import report
from tests.test_report import sample_values, text_of

HOSTILE = {
    "title": "<script>alert('t')</script> {{ metrics }} ¿Qué tal? ¡Olé, Ñandú!",
    "course": '<img src=x onerror="alert(1)"> {% include "report.css" %}',
    "instructor": "Ana <b>Pérez</b> & co",
    "institution": '<img src="file:///etc/passwd"> <link rel="stylesheet" href="http://example.com/x.css">',
}


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    values = sample_values()
    values["config"]["report"].update(HOSTILE)
    values["course"] = report.course(values["config"], datetime(2026, 11, 25))
    html = report.render_html(values)
    report.REFUSED.clear()
    report.write_pdf(html, run / "report.pdf", run)
    return html, PdfReader(run / "report.pdf")


def pdf_text(reader) -> str:
    return re.sub(r"\s+", " ", " ".join(page.extract_text() for page in reader.pages))


@pytest.mark.parametrize("field", HOSTILE)
def test_user_text_appears_literally_in_html_and_pdf(hostile_run, field):
    html, reader = hostile_run
    assert HOSTILE[field] in text_of(html)  # shown as the text it is…
    squeeze = lambda text: re.sub(r"\s+", "", text)  # noqa: E731 - PDF lines wrap anywhere
    assert squeeze(HOSTILE[field]) in squeeze(pdf_text(reader))


def test_no_user_markup_survives(hostile_run):
    html, _ = hostile_run
    assert "<script>alert" not in html and "<img src=x" not in html and "<b>Pérez</b>" not in html
    assert '<img src="file:///etc/passwd">' not in html
    assert "{% include" in text_of(html)  # template syntax in user text is not run


def test_pdf_loads_nothing_from_outside(tmp_path):
    """Even markup that reaches WeasyPrint (it cannot from user text) is refused."""
    secret, run = tmp_path / "secret.png", tmp_path / "run"
    run.mkdir()
    png = Path(__file__).parent / "data" / "pixel.png"
    secret.write_bytes(png.read_bytes())
    (run / "inside.png").write_bytes(png.read_bytes())
    html = (f'<p>x</p><img src="file://{secret}"><img src="http://example.com/a.png">'
            '<img src="file:///etc/passwd"><link rel="stylesheet" href="file:///etc/hostname">'
            '<img src="inside.png">')  # fmt: skip
    report.REFUSED.clear()
    report.write_pdf(html, run / "out.pdf", run)
    assert sorted(report.REFUSED) == sorted(
        [f"file://{secret}", "http://example.com/a.png", "file:///etc/passwd", "file:///etc/hostname"]
    )
    assert sum(len(page.images) for page in PdfReader(run / "out.pdf").pages) == 1  # inside.png only


def test_a_logo_must_be_an_image(tmp_path):
    from pipeline.errors import ConfigError

    fake = tmp_path / "logo.png"
    fake.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ConfigError, match="is not a PNG, JPEG or SVG image"):
        report.logo_uri(fake)
    assert report.logo_uri(Path(__file__).parent / "data" / "pixel.png").startswith("data:image/png;base64,")


SPANISH = "áéíóúñ¿¡ÁÉÍÓÚÑü"


def test_fonts_are_embedded_and_cover_every_spanish_glyph(hostile_run):
    from fontTools.ttLib import TTFont

    _, reader = hostile_run
    fonts = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font["/DescendantFonts"][0].get_object()["/FontDescriptor"] if "/DescendantFonts" in font else font["/FontDescriptor"]
            fonts[str(font["/BaseFont"])] = any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3"))
    assert fonts and all(fonts.values()), fonts  # every font program is inside the PDF
    assert all("DejaVu" in name for name in fonts), fonts  # no fallback font stood in
    text = pdf_text(reader)
    for character in "áéíóúñ¿¡":
        assert character in text, character
    cmap = TTFont("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").getBestCmap()
    assert all(ord(character) in cmap for character in SPANISH)  # none falls back to a box
