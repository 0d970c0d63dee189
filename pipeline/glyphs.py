"""Which characters of the user's text no installed font can draw.

The PDF's fonts come through fontconfig: WeasyPrint asks Pango, which takes the stylesheet's
font stack and then falls back to any installed font that has the character. A character that
no installed font has prints as a blank box, and nothing fails. So the build asks fontconfig
first, once for all its fonts, and names those characters in one warning line before any work.
"""

from __future__ import annotations

import bisect
import functools
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass

# The report.* fields that the covers of the report, the handout and the comparison show.
COVER_FIELDS = ("title", "course", "instructor", "institution", "date")
# Not glyph questions, because they are drawn as nothing: control and format characters
# (zero-width joiner, bidi marks), spaces, line and paragraph separators, and the variation
# selectors that pick a form of the character before them (❤️ is U+2764 U+FE0F).
_NOT_DRAWN = {"Cc", "Cf", "Zs", "Zl", "Zp"}
_VARIATION_SELECTORS = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))
HINT = "install a font that has them, e.g. fonts-noto-color-emoji for emoji"


class GlyphCheckUnavailable(RuntimeError):
    """fontconfig's `fc-list` is not installed (or failed), so coverage cannot be known."""


def missing_glyphs(text: str) -> list[str]:
    """The distinct characters of `text` that no installed font has, in order of appearance.

    Raises GlyphCheckUnavailable when fontconfig cannot be asked.
    """
    coverage = _coverage()
    return [char for char in dict.fromkeys(text) if _drawn(char) and not coverage.has(ord(char))]


def cover_warning(report: dict) -> str | None:
    """One warning line (without the "warning: " prefix) about the cover fields of a config's
    `report` section whose characters have no glyph, or None when every one has a glyph."""
    fields = {name: report.get(name) for name in COVER_FIELDS if report.get(name)}
    if not fields:
        return None
    try:
        missing = {name: missing_glyphs(text) for name, text in fields.items()}
    except GlyphCheckUnavailable as error:
        return (
            f"could not check the fonts' glyphs for the cover ({error}): "
            "a character that no font has prints as a blank box"
        )
    characters = list(dict.fromkeys(char for chars in missing.values() for char in chars))
    if not characters:
        return None
    named = ", ".join(f"{char} (U+{ord(char):04X})" for char in characters)
    where = ", ".join(f"report.{name}" for name, chars in missing.items() if chars)
    return (
        f"no installed font has a glyph for {named} in {where}: they print as blank boxes ({HINT})"
    )


def _drawn(char: str) -> bool:
    code = ord(char)
    if any(low <= code <= high for low, high in _VARIATION_SELECTORS):
        return False
    return not char.isspace() and unicodedata.category(char) not in _NOT_DRAWN


@dataclass(frozen=True)
class _Coverage:
    """The code points of every installed font, as sorted disjoint ranges."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]  # inclusive

    def has(self, code: int) -> bool:
        index = bisect.bisect_right(self.starts, code) - 1
        return index >= 0 and code <= self.ends[index]


@functools.cache
def _coverage() -> _Coverage:
    """Every installed font's charset, from one `fc-list` call (0.1 s for 300 fonts), merged.

    The same answer as `fc-list ':charset=<hex>'` per character, without a process for each.
    """
    command = shutil.which("fc-list")
    if command is None:
        raise GlyphCheckUnavailable("fontconfig's fc-list is not installed")
    try:
        listing = subprocess.run(
            [command, "--format", "%{charset}\n"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise GlyphCheckUnavailable(f"fc-list failed: {error}") from None
    return _parse_charsets(listing)


def _parse_charsets(listing: str) -> _Coverage:
    """fontconfig's charset lines ("20-7e a0-17f 3a9", hexadecimal) as merged ranges."""
    ranges = []
    for token in set(listing.split()):  # fonts of a family share most of their ranges
        low, _, high = token.partition("-")
        try:
            ranges.append((int(low, 16), int(high or low, 16)))
        except ValueError:
            continue  # not a range: nothing a font covers
    starts: list[int] = []
    ends: list[int] = []
    for low, high in sorted(ranges):
        if ends and low <= ends[-1] + 1:
            ends[-1] = max(ends[-1], high)
        else:
            starts.append(low)
            ends.append(high)
    return _Coverage(tuple(starts), tuple(ends))
