"""The logo check accepts every real PNG, JPEG and SVG logo; what it refuses is in
tests/test_errors.py, as the user meets it."""

import io
from pathlib import Path

import pytest
from PIL import Image

from pipeline import logo, report
from pipeline.config import load_config
from pipeline.errors import ConfigError

PIXEL = Path(__file__).parent / "data" / "pixel.png"
SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    '<rect width="5" height="5"/></svg>'
)
LONG_PROLOGUE = f'<?xml version="1.0" encoding="UTF-8"?>\n<!-- {"Escudo. " * 75}-->\n{SVG}'


def _image(format_: str, size=(4, 4)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format=format_)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, content, media",
    [
        ("logo.png", PIXEL.read_bytes(), "image/png"),
        ("logo.jpg", _image("JPEG"), "image/jpeg"),
        ("escudo.JPEG", _image("JPEG"), "image/jpeg"),
        ("logo.png", _image("JPEG"), "image/jpeg"),  # the content decides, not the name
        ("logo.svg", SVG, "image/svg+xml"),
        # 648 bytes of XML declaration and comment before <svg>: the old 512-byte sniff refused it
        ("logo.svg", LONG_PROLOGUE, "image/svg+xml"),
        ("logo.svg", "\ufeff" + SVG, "image/svg+xml"),  # a byte-order mark
        ("logo.svg", '<svg width="10" height="10"/>', "image/svg+xml"),  # no namespace
    ],
)
def test_real_logos_are_accepted_at_config_time_and_embedded(tmp_path, name, content, media):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    config = load_config("quick", overrides=[f"report.logo={path}"])
    assert config.report.logo == str(path)
    assert report.logo_uri(path).startswith(f"data:{media};base64,")


def test_a_gif_is_not_a_logo(tmp_path):
    path = tmp_path / "logo.png"
    path.write_bytes(_image("GIF"))
    with pytest.raises(ConfigError, match="is not a PNG, JPEG or SVG image"):
        logo.read(path)


def test_too_many_pixels_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(logo, "MAX_PIXELS", 15)
    path = tmp_path / "logo.png"
    path.write_bytes(_image("PNG", size=(4, 4)))
    with pytest.raises(ConfigError, match=r"is 4 × 4 pixels, more than a logo needs"):
        logo.read(path)


def test_a_file_that_changed_since_the_config_is_checked_again(tmp_path):
    path = tmp_path / "logo.png"
    path.write_bytes(PIXEL.read_bytes())
    load_config("quick", overrides=[f"report.logo={path}"])
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="is empty"):
        report.logo_uri(path)


def test_a_damaged_body_is_caught_after_weasyprint_was_imported(tmp_path):
    """WeasyPrint turns on Pillow's LOAD_TRUNCATED_IMAGES for the whole process on import."""
    import weasyprint  # noqa: F401
    from PIL import ImageFile

    from tests.test_errors import _png

    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    path = tmp_path / "logo.png"
    path.write_bytes(_png(body=b"\x78\x9c" + b"\xff" * 12))
    with pytest.raises(ConfigError, match="is a damaged PNG image"):
        logo.read(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # WeasyPrint's own setting is left as it was
