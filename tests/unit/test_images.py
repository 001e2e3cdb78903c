"""Image input: decoding untrusted bytes (formats, EXIF, limits, bombs) and every failure's code."""

from __future__ import annotations

import base64
import io
import struct
import textwrap
import zlib

import pytest
from PIL import Image, ImageFile

from replan_common.errors import ImageTooLarge, InvalidImage
from replan_common.images import (
    ImageLimits,
    decode_base64_image_data,
    decode_image,
    decode_image_b64,
    encode_png,
    encode_png_b64,
    png_data_uri,
)

LIMITS = ImageLimits()


def gradient(width: int = 40, height: int = 20, mode: str = "RGB") -> Image.Image:
    """A small image whose pixels differ, so a rotation or channel mix-up shows."""
    image = Image.new("RGB", (width, height))
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    return image.convert(mode)


def encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A real 1-bit PNG of `width`×`height`, all black: a few kB that inflate to width×height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --- formats -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "params"), [("PNG", {}), ("JPEG", {"quality": 95}), ("WEBP", {"lossless": True})])
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P"])
def test_png_jpeg_and_webp_decode_to_rgb(fmt: str, params: dict[str, object], mode: str) -> None:
    source = gradient(mode=mode if not (fmt == "JPEG" and mode in {"RGBA", "P"}) else "RGB")
    image = decode_image(encoded(source, fmt, **params), limits=LIMITS)
    assert image.mode == "RGB"
    assert image.size == (40, 20)
    if fmt != "JPEG":  # lossless: the pixels come back
        assert image.tobytes() == source.convert("RGB").tobytes()


def test_exif_orientation_is_applied() -> None:
    source = gradient(40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    raw = encoded(source, "JPEG", quality=95, exif=exif.tobytes())
    image = decode_image(raw, limits=LIMITS)
    assert image.size == (20, 40)
    # The top-left of the displayed image is the original's bottom-left (dark red, bright green).
    expected = source.transpose(Image.Transpose.ROTATE_270)
    assert image.getpixel((0, 0)) == pytest.approx(expected.getpixel((0, 0)), abs=12)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_rejected(fmt: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(encoded(gradient(), fmt), limits=LIMITS)
    assert caught.value.code == "unsupported_image_format"
    assert fmt in caught.value.message


def test_png_round_trips_through_encode_and_data_uri() -> None:
    source = gradient()
    assert decode_image(encode_png(source), limits=LIMITS).tobytes() == source.tobytes()
    assert decode_image_b64(encode_png_b64(source), limits=LIMITS).tobytes() == source.tobytes()
    assert png_data_uri(source).startswith("data:image/png;base64,")
    assert decode_image_b64(png_data_uri(source), limits=LIMITS).tobytes() == source.tobytes()


# --- limits --------------------------------------------------------------------------------------------


def test_image_over_the_byte_limit_is_rejected() -> None:
    raw = encoded(gradient(), "PNG")
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(raw, limits=ImageLimits(max_bytes=len(raw) - 1))
    assert caught.value.code == "image_too_large"
    assert caught.value.status == 413
    decode_image(raw, limits=ImageLimits(max_bytes=len(raw)))


def test_base64_over_the_byte_limit_is_rejected_before_decoding() -> None:
    data = encode_png_b64(gradient())
    with pytest.raises(ImageTooLarge) as caught:
        decode_base64_image_data(data, limits=ImageLimits(max_bytes=len(data) // 2))
    assert caught.value.code == "image_too_large"


def test_image_over_the_pixel_limit_is_rejected() -> None:
    raw = encoded(gradient(100, 100), "PNG")
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(raw, limits=ImageLimits(max_pixels=100 * 100 - 1))
    assert caught.value.code == "too_many_pixels"
    assert "10000" in caught.value.message
    assert decode_image(raw, limits=ImageLimits(max_pixels=100 * 100)).size == (100, 100)


@pytest.mark.parametrize("side", [8_000, 20_000])
def test_decompression_bomb_is_rejected_before_its_pixels_are_decoded(
    side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8000² is over our 40 MP limit but under Pillow's own bomb check; 20000² is over both.
    bomb = png_claiming(side, side)
    assert len(bomb) < 100_000

    def refuse_to_load(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded before the size was checked")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_load)
    with pytest.raises(ImageTooLarge) as caught:
        decode_image(bomb, limits=LIMITS)
    assert caught.value.code == "too_many_pixels"


def test_bomb_png_helper_makes_a_real_image() -> None:
    # The bomb test means nothing if its PNG is not decodable: a small one must decode.
    assert decode_image(png_claiming(64, 48), limits=LIMITS).size == (64, 48)


def test_image_with_a_tiny_side_is_rejected() -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(encoded(gradient(40, 4), "PNG"), limits=LIMITS)
    assert caught.value.code == "image_too_small"


# --- bad input -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"definitely not an image", b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40],
    ids=["text", "empty", "png-signature-only"],
)
def test_corrupt_bytes_are_rejected(raw: bytes) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_image(raw, limits=LIMITS)
    assert caught.value.code == "invalid_image"
    assert caught.value.status == 400


def test_truncated_png_is_rejected() -> None:
    raw = encoded(gradient(200, 200), "PNG")
    with pytest.raises(InvalidImage) as caught:
        decode_image(raw[: len(raw) // 2], limits=LIMITS)
    assert caught.value.code == "invalid_image"


@pytest.mark.parametrize("data", ["not base64!", "abc", "data:image/png;base64,%%%"])
def test_text_that_is_not_base64_is_rejected(data: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_base64_image_data(data, limits=LIMITS, param="image")
    assert (caught.value.code, caught.value.param) == ("invalid_base64", "image")


def test_empty_base64_is_rejected() -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_base64_image_data("   ", limits=LIMITS)
    assert caught.value.code == "empty_image"


@pytest.mark.parametrize(
    "data", ["https://example.com/cat.png", "HTTP://example.com/cat.png", "file:///etc/passwd", "data:image/png,abc"]
)
def test_urls_are_rejected_not_fetched(data: str) -> None:
    with pytest.raises(InvalidImage) as caught:
        decode_base64_image_data(data, limits=LIMITS, param="input_image")
    assert (caught.value.code, caught.value.param) == ("image_url_not_allowed", "input_image")


@pytest.mark.parametrize("prefix", ["data:image/png;base64,", "DATA:image/png;base64,", "data:;base64,"])
def test_base64_data_uri_is_accepted(prefix: str) -> None:
    raw = encode_png(gradient())
    assert decode_base64_image_data(prefix + base64.b64encode(raw).decode(), limits=LIMITS) == raw


def test_base64_wrapped_at_76_columns_is_accepted() -> None:
    # `base64 photo.png` and mail tools wrap their output; the line breaks used to fail validation.
    raw = encode_png(gradient())
    wrapped = "\n".join(textwrap.wrap(base64.b64encode(raw).decode(), 76)) + "\n"
    assert "\n" in wrapped.strip()
    assert decode_base64_image_data(wrapped, limits=LIMITS) == raw
