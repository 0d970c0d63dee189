"""User text is data, never markup; the PDF loads nothing from outside the run; its fonts are
embedded and have every Spanish glyph."""

import io
import re
from datetime import datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from pipeline import report
from tests.test_report import sample_values, text_of

HOSTILE = {
    "title": "<script>alert('t')</script> {{ metrics }} ¿Qué tal? ¡Olé, Ñandú! Ánimo, Éxito, "
    "Índice, Órbita, Único: más año, país, camión, pingüino",
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
    html = (
        f'<p>x</p><img src="file://{secret}"><img src="http://example.com/a.png">'
        '<img src="file:///etc/passwd"><link rel="stylesheet" href="file:///etc/hostname">'
        '<img src="inside.png">'
    )
    report.REFUSED.clear()
    report.write_pdf(html, run / "out.pdf", run)
    assert sorted(report.REFUSED) == sorted(
        [
            f"file://{secret}",
            "http://example.com/a.png",
            "file:///etc/passwd",
            "file:///etc/hostname",
        ]
    )
    assert (
        sum(len(page.images) for page in PdfReader(run / "out.pdf").pages) == 1
    )  # inside.png only


def test_a_logo_must_be_an_image(tmp_path):
    from pipeline.errors import ConfigError

    fake = tmp_path / "logo.png"
    fake.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ConfigError, match="is not a PNG, JPEG or SVG image"):
        report.logo_uri(fake)
    assert report.logo_uri(Path(__file__).parent / "data" / "pixel.png").startswith(
        "data:image/png;base64,"
    )


SPANISH = "áéíóúüñÁÉÍÓÚÑ¿¡"


def _to_unicode(cmap: bytes) -> dict[int, str]:
    """A font's ToUnicode CMap: which character each glyph code stands for."""
    text = cmap.decode("latin-1")
    utf16 = lambda hex_text: bytes.fromhex(hex_text).decode("utf-16-be")  # noqa: E731
    mapping = {}
    for block in re.findall(r"beginbfchar(.*?)endbfchar", text, flags=re.DOTALL):
        for code, target in re.findall(r"<(\w+)>\s*<(\w+)>", block):
            mapping[int(code, 16)] = utf16(target)
    for block in re.findall(r"beginbfrange(.*?)endbfrange", text, flags=re.DOTALL):
        assert "[" not in block, "array ranges are not read here"
        for low, high, target in re.findall(r"<(\w+)>\s*<(\w+)>\s*<(\w+)>", block):
            for offset in range(int(high, 16) - int(low, 16) + 1):
                mapping[int(low, 16) + offset] = chr(ord(utf16(target)) + offset)
    return mapping


def drawn_characters(reader) -> dict[str, dict[str, bool]]:
    """For each font of the PDF, each character it shows and whether its embedded program draws
    it: the font's ToUnicode map names the glyphs of each character, and each must have an
    outline in the font program inside the PDF (not .notdef, not emptied by subsetting)."""
    from fontTools.pens.recordingPen import RecordingPen
    from fontTools.ttLib import TTFont

    fonts = {}
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            name = str(font["/BaseFont"])
            if name in fonts:  # one font object serves every page
                continue
            assert font["/Subtype"] == "/Type0", name  # WeasyPrint's CID fonts: code = glyph id
            cid_font = font["/DescendantFonts"][0].get_object()
            assert cid_font["/CIDToGIDMap"] == "/Identity", name
            descriptor = cid_font["/FontDescriptor"].get_object()
            assert "/FontFile2" in descriptor, f"{name}: no TrueType program embedded"
            program = TTFont(io.BytesIO(descriptor["/FontFile2"].get_object().get_data()))
            glyphs, order = program.getGlyphSet(), program.getGlyphOrder()
            fonts[name] = {}
            to_unicode = _to_unicode(font["/ToUnicode"].get_object().get_data())
            for glyph_id, character in to_unicode.items():
                pen = RecordingPen()
                glyphs[order[glyph_id]].draw(pen)
                ink = glyph_id != 0 and bool(pen.value)
                fonts[name][character] = (
                    fonts[name].get(character, True) and ink
                )  # every glyph of it
    return fonts


def test_fonts_are_embedded_and_cover_every_spanish_glyph(hostile_run):
    """The cover's title has every Spanish letter and sign: each is drawn by a glyph of a DejaVu
    font program embedded in the PDF, no character prints as a blank box, and text extraction
    gives them back."""
    _, reader = hostile_run
    fonts = drawn_characters(reader)
    assert fonts and all("DejaVu" in name for name in fonts), fonts  # no fallback font stood in
    drawn = {character for shown in fonts.values() for character, ink in shown.items() if ink}
    assert [character for character in SPANISH if character not in drawn] == []
    for name, shown in fonts.items():  # none prints as a blank box
        assert [c for c, ink in shown.items() if not (ink or c.isspace())] == [], name
    text = pdf_text(reader)
    assert [character for character in SPANISH if character not in text] == []


def test_to_unicode_maps_are_read_entry_by_entry_and_range_by_range():
    assert _to_unicode(
        b"beginbfchar\n<0003> <0020>\n<00ab> <00f1>\nendbfchar\n"
        b"beginbfrange\n<0010> <0012> <00e1>\nendbfrange"
    ) == {3: " ", 0xAB: "ñ", 0x10: "á", 0x11: "â", 0x12: "ã"}
