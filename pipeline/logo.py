"""The cover's logo (report.logo): a real PNG, JPEG or SVG image, parsed, never sniffed.

One check, made twice: when the config is loaded (a logo that cannot be shown fails before any
work, not after the training) and when the report embeds the bytes (the file may have changed
since). Raster images go through Pillow, which decodes every pixel; an SVG through expat with
DTDs refused, so no entity is ever declared, let alone expanded (billion laughs) or fetched.
"""

from __future__ import annotations

import base64
import io
import json
import warnings
from pathlib import Path
from xml.parsers import expat

from pipeline import artifacts
from pipeline.errors import ConfigError

MAX_BYTES = 10 * 2**20  # a logo is kilobytes, and the PDF embeds it: ten megabytes is not one
MAX_PIXELS = 25_000_000  # 5000 × 5000; Pillow's own decompression-bomb check starts at 89 M
RASTER = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}  # signature -> Pillow's format
MEDIA = {"PNG": "image/png", "JPEG": "image/jpeg", "SVG": "image/svg+xml"}
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def read(path: Path, key: str = "report.logo") -> tuple[str, bytes]:
    """(media type, bytes) of the image at `path`; ConfigError naming `key` and the path if it
    is missing, not a regular file, too large, or not an intact PNG, JPEG or SVG image."""
    try:
        content = artifacts.read_regular(path, key, ConfigError, MAX_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raise ConfigError(f"{key}: file not found: {path}") from None
    except OSError as error:
        raise ConfigError(f"{key}: cannot read {path}: {error.strerror or error}") from None
    if not content:
        raise ConfigError(f"{key}: {path} is empty, not a PNG, JPEG or SVG image")
    raster = next((kind for magic, kind in RASTER.items() if content.startswith(magic)), None)
    if raster is not None:
        _check_raster(content, raster, path, key)
        return MEDIA[raster], content
    if Path(path).suffix.lower() == ".svg" or content.lstrip()[:1] == b"<":
        _check_svg(content, path, key)
        return MEDIA["SVG"], content
    raise ConfigError(f"{key}: {path} is not a PNG, JPEG or SVG image")


def data_uri(path: Path, key: str = "report.logo") -> str:
    media, content = read(path, key)
    return f"data:{media};base64,{base64.b64encode(content).decode('ascii')}"


def _check_raster(content: bytes, kind: str, path: Path, key: str) -> None:
    """Pillow's verify() checks the structure and checksums without decoding; load() then
    decodes every pixel, which catches a body whose checksums hold but whose data does not."""
    from PIL import Image, ImageFile

    # WeasyPrint sets LOAD_TRUNCATED_IMAGES for the whole process when imported, which would
    # let a damaged body through once a report has been rendered in the same process.
    truncated_ok, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # an error, not a line
            with Image.open(io.BytesIO(content), formats=[kind]) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ConfigError(
                        f"{key}: {path} is {width} × {height} pixels, more than a logo needs "
                        f"(at most {MAX_PIXELS} pixels)"
                    )
                image.verify()
            with Image.open(io.BytesIO(content), formats=[kind]) as image:
                image.load()
    except ConfigError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ConfigError(f"{key}: {path} has more pixels than a logo needs") from None
    except Exception as error:  # Pillow reports damage as SyntaxError, OSError, ValueError...
        raise ConfigError(f"{key}: {path} is a damaged {kind} image ({_reason(error)})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_ok


def _check_svg(content: bytes, path: Path, key: str) -> None:
    """Well-formed XML without a DOCTYPE, whose root element is <svg>."""
    parser = expat.ParserCreate(namespace_separator=" ")
    roots: list[str] = []

    def refuse_doctype(*_arguments) -> None:
        raise ConfigError(f"{key}: {path} has a DOCTYPE (DTDs and entities are refused in a logo)")

    def start(name: str, _attributes) -> None:
        if not roots:
            roots.append(name)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype  # cannot come without a DOCTYPE; refused twice
    parser.StartElementHandler = start
    try:
        parser.Parse(content, True)
    except expat.ExpatError as error:
        reason = f"{expat.ErrorString(error.code)}, line {error.lineno}"
        raise ConfigError(f"{key}: {path} is not well-formed XML ({reason})") from None
    namespace, _, name = roots[0].rpartition(" ")
    if name != "svg" or namespace not in ("", SVG_NAMESPACE):
        raise ConfigError(f"{key}: {path} is XML but not SVG (its root element is <{name}>)")


def _reason(error: Exception) -> str:
    """The first line of an error's message, short: it ends up inside a one-line message."""
    text = (str(error).splitlines() or [""])[0] or type(error).__name__
    return json.dumps(text)[1:-1][:100]
