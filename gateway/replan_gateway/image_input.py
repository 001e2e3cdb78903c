"""Images as clients send them: checked at the door, before any upstream spends time on them.

An image arrives as base64 (or a data URI) or, only when hosts are allow-listed, as an http(s) URL that
the gateway fetches itself (no redirects, size-capped, short timeout). Either way the bytes are checked
against the byte and pixel limits by reading the image header only (no pixels decoded, so a
decompression bomb costs nothing) and forwarded upstream as base64.
"""

from __future__ import annotations

import base64
import io
import warnings
from fnmatch import fnmatch
from urllib.parse import urlsplit

import httpx
from PIL import Image, UnidentifiedImageError

from replan_common.errors import BadRequest, ImageTooLarge, InvalidImage, UpstreamError, UpstreamTimeout
from replan_common.images import ALLOWED_FORMATS, ImageLimits, decode_base64_image_data
from replan_gateway.settings import FetchSettings


def check_image_bytes(raw: bytes, *, limits: ImageLimits, param: str) -> tuple[int, int]:
    """Width and height from the header; raises `ImageTooLarge` (413) or `InvalidImage` (400)."""
    if len(raw) > limits.max_bytes:
        raise ImageTooLarge(f"image has {len(raw)} bytes; the limit is {limits.max_bytes}", param=param)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                width, height, fmt = image.width, image.height, image.format
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(str(exc), code="too_many_pixels", param=param) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(
            "image could not be read; send a PNG, JPEG or WebP file", code="invalid_image", param=param
        ) from exc
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
            code="too_many_pixels",
            param=param,
        )
    if fmt not in ALLOWED_FORMATS:
        raise InvalidImage(
            f"image format {fmt} is not accepted; send PNG, JPEG or WebP", code="unsupported_image_format", param=param
        )
    if min(width, height) < limits.min_side:
        raise InvalidImage(
            f"image is {width}x{height}; each side must be at least {limits.min_side} pixels",
            code="image_too_small",
            param=param,
        )
    return width, height


class ImageInput:
    """Turns a client's image field into checked base64."""

    def __init__(
        self, limits: ImageLimits, fetch: FetchSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.limits = limits
        self.fetch = fetch
        self._client = (
            httpx.AsyncClient(follow_redirects=False, timeout=fetch.timeout_s, transport=transport)
            if fetch.allow_hosts
            else None
        )

    async def resolve(self, image: str, *, param: str = "image") -> str:
        """Checked base64 for a base64 string, data URI or (allow-listed) URL."""
        if image.lstrip().startswith(("http://", "https://")):
            raw = await self._fetch(image.strip(), param)
            check_image_bytes(raw, limits=self.limits, param=param)
            return base64.b64encode(raw).decode("ascii")
        raw = decode_base64_image_data(image, limits=self.limits, param=param)
        check_image_bytes(raw, limits=self.limits, param=param)
        return image

    def from_upload(self, raw: bytes, *, param: str = "image") -> str:
        """Checked base64 for uploaded bytes (multipart)."""
        if not raw:
            raise InvalidImage("image is empty", code="empty_image", param=param)
        check_image_bytes(raw, limits=self.limits, param=param)
        return base64.b64encode(raw).decode("ascii")

    def _allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in (("https", "http") if self.fetch.allow_http else ("https",)):
            return False
        host = (parts.hostname or "").lower()
        return any(fnmatch(host, pattern.lower()) for pattern in self.fetch.allow_hosts)

    async def _fetch(self, url: str, param: str) -> bytes:
        if self._client is None or not self._allowed(url):
            raise BadRequest(
                "image URLs are not fetched by this gateway"
                + (" from this host" if self._client is not None else "")
                + "; send the image as base64 or a data URI (operators: REPLAN_GATEWAY_FETCH__ALLOW_HOSTS)",
                code="image_url_not_allowed",
                param=param,
            )
        try:
            async with self._client.stream("GET", url) as response:
                if response.status_code != 200:
                    raise UpstreamError(
                        f"fetching the image URL answered HTTP {response.status_code}",
                        code="image_fetch_failed",
                        param=param,
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.limits.max_bytes:
                        raise ImageTooLarge(
                            f"the image at the URL is larger than {self.limits.max_bytes} bytes", param=param
                        )
                    chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout("fetching the image URL timed out", code="image_fetch_timeout", param=param) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"fetching the image URL failed ({type(exc).__name__})", code="image_fetch_failed", param=param
            ) from exc
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
