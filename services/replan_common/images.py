"""Image input and output: decode untrusted bytes safely, encode results.

Decoding enforces byte and pixel limits *before* pixels are decompressed (decompression bombs), applies
EXIF orientation (phone photos), and returns RGB. Every failure is an `InvalidImage` or `ImageTooLarge`
with a code a client can act on.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from replan_common.errors import ImageTooLarge, InvalidImage

ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
_WHITESPACE = re.compile(r"\s+")
_DATA_URI = re.compile(r"^data:(?P<mime>[\w/+.-]+)?(?P<params>(;[\w=.-]+)*);base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ImageLimits:
    """Upper bounds for an accepted image."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 8


def decode_base64_image_data(data: str, *, limits: ImageLimits, param: str = "image") -> bytes:
    """Bytes from base64 or a `data:image/...;base64,` URI; rejects other URIs and oversized payloads."""
    text = data.strip()
    match = _DATA_URI.match(text)
    if match:
        text = text[match.end() :]
    elif text[:8].lower().startswith(("http://", "https://", "file:", "data:")):
        raise InvalidImage(
            "image must be base64 or a base64 data URI; URLs are not fetched by this service",
            code="image_url_not_allowed",
            param=param,
        )
    # `base64` and mail tools wrap lines at 76 columns; the whitespace is not part of the data, and
    # b64decode(validate=True) would reject it.
    text = _WHITESPACE.sub("", text)
    # base64 inflates by 4/3: reject before decoding what cannot fit.
    if len(text) > limits.max_bytes * 4 // 3 + 4:
        raise ImageTooLarge(f"image has about {len(text) * 3 // 4} bytes; the limit is {limits.max_bytes}", param=param)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"image is not valid base64: {exc}", code="invalid_base64", param=param) from exc
    if not raw:
        raise InvalidImage("image is empty", code="empty_image", param=param)
    return raw


def decode_image(raw: bytes, *, limits: ImageLimits, param: str = "image") -> Image.Image:
    """An RGB image from PNG/JPEG/WebP bytes, EXIF-oriented, within `limits`."""
    if len(raw) > limits.max_bytes:
        raise ImageTooLarge(f"image has {len(raw)} bytes; the limit is {limits.max_bytes}", param=param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > limits.max_pixels:
                raise ImageTooLarge(
                    f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
                    code="too_many_pixels",
                    param=param,
                )
            if image.format not in ALLOWED_FORMATS:
                raise InvalidImage(
                    f"image format {image.format} is not accepted; send PNG, JPEG or WebP",
                    code="unsupported_image_format",
                    param=param,
                )
            image.load()
    except (ImageTooLarge, InvalidImage):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc), code="too_many_pixels", param=param) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(
            f"image could not be decoded ({type(exc).__name__}); send a PNG, JPEG or WebP file",
            code="invalid_image",
            param=param,
        ) from exc
    oriented: Image.Image = ImageOps.exif_transpose(image)
    if min(oriented.size) < limits.min_side:
        raise InvalidImage(
            f"image is {oriented.width}x{oriented.height}; each side must be at least {limits.min_side} pixels",
            code="image_too_small",
            param=param,
        )
    return oriented.convert("RGB")


def decode_image_b64(data: str, *, limits: ImageLimits, param: str = "image") -> Image.Image:
    """`decode_image` of a base64 string or data URI."""
    return decode_image(decode_base64_image_data(data, limits=limits, param=param), limits=limits, param=param)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def encode_png_b64(image: Image.Image) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def png_data_uri(image: Image.Image) -> str:
    return "data:image/png;base64," + encode_png_b64(image)
