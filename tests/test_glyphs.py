"""Names and titles in any script reach the PDF; a character that no installed font has is named
in one warning line, not printed silently as a blank box. Real fontconfig, fonts and PDFs."""

import io
import json
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from pypdf import PdfReader

from pipeline import build, glyphs, notebook, report
from pipeline.config import load_config
from pipeline.errors import RunError
from tests.conftest import SUBSET_DIR
from tests.test_report import sample_values

DAE_REPORT = Path(sys.executable).parent / "dae-report"
CJK_TITLE = "Informe 机器学习"  # Chinese
CJK_COURSE = "기계 학습 · 日本語"  # Korean, Japanese
# No installed font has these (test_fontconfig_agrees checks it): a private-use character, and
# an emoji of Unicode 14 that DejaVu does not have (its older emoji, like 😀, it has).
NO_FONT = "\ue000"
NO_FONT_EMOJI = "\U0001fae0"  # 🫠 melting face


def fc_list(*arguments: str) -> str:
    result = subprocess.run(["fc-list", *arguments], capture_output=True, text=True, check=True)
    return result.stdout


needs_fontconfig = pytest.mark.skipif(
    shutil.which("fc-list") is None, reason="fontconfig's fc-list is not installed"
)
needs_noto_cjk = pytest.mark.skipif(
    shutil.which("fc-list") is None or not fc_list("Noto Sans CJK SC", "family").strip(),
    reason="Debian's fonts-noto-cjk is not installed (`make install` installs it)",
)
needs_them_missing = pytest.mark.skipif(
    shutil.which("fc-list") is None
    or any(fc_list(f":charset={ord(c):x}", "family").strip() for c in NO_FONT + NO_FONT_EMOJI),
    reason="a font here has U+E000 or U+1FAE0 (fonts-noto-color-emoji?): no example is missing",
)


def embedded_fonts(pdf: Path) -> set[str]:
    """The PDF's font names without their subset tag: {"DejaVu-Sans", "Noto-Sans-CJK-SC", ...}."""
    names = set()
    for page in PdfReader(pdf).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = (
                font["/DescendantFonts"][0].get_object()["/FontDescriptor"]
                if "/DescendantFonts" in font
                else font["/FontDescriptor"]
            )
            names.add(str(descriptor.get_object()["/FontName"]).lstrip("/").split("+")[-1])
    return names


def pdf_text(pdf: Path) -> str:
    return " ".join(page.extract_text() for page in PdfReader(pdf).pages)


@pytest.fixture
def fresh_coverage():
    """fontconfig's answer is cached per process: dropped around a test that changes PATH."""
    glyphs._coverage.cache_clear()
    yield
    glyphs._coverage.cache_clear()


# missing_glyphs: the pure check, against the fonts installed here.


@needs_fontconfig
@pytest.mark.parametrize(
    "text",
    [
        "Denoising Autoencoder con Fashion-MNIST",
        "Práctica 2 — Grupo B: ¿Qué tal? ¡Olé, Ñandú! «ü»",
        "A",
    ],
)
def test_latin_and_spanish_have_every_glyph(text):
    assert glyphs.missing_glyphs(text) == []


@needs_them_missing
def test_a_character_no_font_has_is_returned_once_in_order():
    text = f"a{NO_FONT}b{NO_FONT_EMOJI}{NO_FONT}"
    assert glyphs.missing_glyphs(text) == [NO_FONT, NO_FONT_EMOJI]


@needs_fontconfig
def test_spaces_controls_and_joiners_are_not_glyph_questions():
    # tab, newline, no-break space, zero-width joiner, right-to-left mark, variation selector 16
    assert glyphs.missing_glyphs("\t\n\u00a0\u200d\u200f\ufe0f\u3000") == []


@needs_fontconfig
@pytest.mark.parametrize(
    "character",
    ["A", "ñ", "Ж", "Ω", "中", "한", "ア", "ا", "א", "क", "😀", "𓀀"]
    + [NO_FONT, NO_FONT_EMOJI, "\U0010fffd"],
)
def test_fontconfig_agrees(character):
    """The one-call coverage says what `fc-list ':charset=<hex>'` says for the character alone."""
    covered = bool(fc_list(f":charset={ord(character):x}", "family").strip())
    assert glyphs.missing_glyphs(character) == ([] if covered else [character])


def test_charsets_are_merged_into_ranges():
    coverage = glyphs._parse_charsets("20-7e a0\n41-5a 7f 100-17f\n\n")
    assert (coverage.starts, coverage.ends) == ((0x20, 0xA0, 0x100), (0x7F, 0xA0, 0x17F))
    assert [coverage.has(code) for code in (0x1F, 0x20, 0x7F, 0x80, 0xA0, 0xA1, 0x17F, 0x180)] == [
        False,
        True,
        True,
        False,
        True,
        False,
        True,
        False,
    ]


@needs_them_missing
def test_cover_warning_names_each_character_and_field():
    fields = {"title": f"Informe {NO_FONT}", "course": f"IA {NO_FONT_EMOJI}{NO_FONT}"}
    warning = glyphs.cover_warning({**fields, "instructor": "Ana", "institution": None})
    assert warning == (
        f"no installed font has a glyph for {NO_FONT} (U+E000), {NO_FONT_EMOJI} (U+1FAE0) in "
        "report.title, report.course: they print as blank boxes (install a font that has them, "
        "e.g. fonts-noto-color-emoji for emoji)"
    )
    assert glyphs.cover_warning({"title": "Informe", "course": None}) is None


def test_without_fontconfig_the_warning_says_glyphs_were_not_checked(
    monkeypatch, tmp_path, fresh_coverage
):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no fc-list
    warning = glyphs.cover_warning({"title": "Informe"})
    assert warning.startswith(
        "could not check the fonts' glyphs for the cover (fontconfig's fc-list is not installed)"
    )
    with pytest.raises(glyphs.GlyphCheckUnavailable):
        glyphs.missing_glyphs("A")


# The PDFs: the report's and the handout's covers.


@needs_noto_cjk
def test_chinese_korean_and_japanese_cover_text_renders_in_noto_cjk(tmp_path):
    values = sample_values()
    values["config"]["report"].update(
        title=CJK_TITLE, course=CJK_COURSE, instructor="Ελένη Ιβάνοβα · Иван"
    )
    values["course"] = report.course(values["config"], datetime(2026, 11, 25))
    report.write_pdf(report.render_html(values), tmp_path / "report.pdf", tmp_path)

    fonts = embedded_fonts(tmp_path / "report.pdf")
    # report.css's CJK fallback, not whichever CJK font fontconfig would fall back to
    assert "Noto-Sans-CJK-SC" in fonts, fonts
    assert "DejaVu-Sans" in fonts and "DejaVu-Sans-Bold" in fonts, fonts  # Latin keeps its look
    text = re.sub(r"\s+", " ", pdf_text(tmp_path / "report.pdf"))
    for words in ("机器学习", "기계 학습", "日本語", "Ελένη Ιβάνοβα", "Иван"):
        assert words in text, words


@needs_noto_cjk
def test_handout_with_cjk_course_embeds_noto_cjk_and_warns_nothing(tmp_path):
    overrides = [f"report.title={CJK_TITLE}", f"report.course={CJK_COURSE}"]
    config = load_config("quick", overrides=overrides)
    progress = io.StringIO()
    folder = build.handout(config=config, out_dir=tmp_path / "handout", stream=progress)

    assert "Noto-Sans-CJK-SC" in embedded_fonts(folder / "handout.pdf")
    assert "warning" not in progress.getvalue(), progress.getvalue()


@needs_them_missing
def test_handout_names_characters_no_font_has_in_one_warning_line(tmp_path):
    """The CLI as users type it: exit 0, one line naming each character with its U+ code."""
    result = subprocess.run(
        [
            str(DAE_REPORT),
            "handout",
            "--lang",
            "en",
            "--out",
            str(tmp_path / "handout"),
            "--set",
            f"report.title=Lab {NO_FONT_EMOJI}",
            "--set",
            f"report.course=IA {NO_FONT} {NO_FONT_EMOJI}",
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"      warning: no installed font has a glyph for {NO_FONT_EMOJI} (U+1FAE0), "
        f"{NO_FONT} (U+E000) in report.title, report.course: they print as blank boxes "
        "(install a font that has them, e.g. fonts-noto-color-emoji for emoji)"
    ], result.stderr
    assert (tmp_path / "handout" / "handout.pdf").stat().st_size > 0


@needs_them_missing
def test_build_warns_before_the_first_stage_and_records_it(tmp_path, monkeypatch):
    """The build says it before any work, and keeps it in run.json and build.log. The notebook is
    stopped at once: what is under test is the warning, not the lab."""

    def stop(*args, **kwargs):
        raise RuntimeError("notebook stopped by the test")

    monkeypatch.setattr(notebook, "execute", stop)
    config = load_config("quick", overrides=[f"report.institution=Universidad {NO_FONT}"])
    progress = io.StringIO()
    with pytest.raises(
        RunError, match="the notebook stage failed: RuntimeError: notebook stopped by the test"
    ):
        build.build(config=config, out_dir=tmp_path, data_dir=SUBSET_DIR, stream=progress)

    lines = progress.getvalue().splitlines()
    expected = f"no installed font has a glyph for {NO_FONT} (U+E000) in report.institution"
    assert expected in lines[0] and lines[0].startswith("      warning: "), lines
    assert sum("warning" in line for line in lines) == 1, lines
    run_dir = next(path for path in tmp_path.iterdir() if (path / "run.json").is_file())
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert len(record["warnings"]) == 1 and expected in record["warnings"][0]
    log = (run_dir / "build.log").read_text(encoding="utf-8").splitlines()
    assert log == [f"warning: {record['warnings'][0]}"]


def test_the_notebook_stage_does_not_echo_the_warning_again(tmp_path):
    """build.log starts with the warning the terminal already showed; following the log during
    the notebook echoes only what the kernel appends."""
    from pipeline.progress import LogFollower

    log = tmp_path / "build.log"
    log.write_text("warning: already shown\n", encoding="utf-8")
    terminal = io.StringIO()
    with LogFollower(log, terminal):
        with log.open("a", encoding="utf-8") as file:
            file.write("1/1  loss 0.5\n")
    assert terminal.getvalue() == "      1/1  loss 0.5\n"
