"""Helpers of the editor's service tests: small images, metric samples, polling."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable

import httpx
from PIL import Image

#: Small and fast: the tiny preset works at 128² at most; 2 steps.
IMAGE_SIZE = (64, 48)
STEPS = 2


def png_b64(size: tuple[int, int] = IMAGE_SIZE, color: tuple[int, int, int] = (90, 140, 200)) -> str:
    """A small PNG as base64, with a darker square so it is not flat."""
    image = Image.new("RGB", size, color)
    image.paste((20, 20, 20), (8, 8, 24, 24))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode_png(data: bytes | str) -> Image.Image:
    raw = base64.b64decode(data) if isinstance(data, str) else data
    return Image.open(io.BytesIO(raw))


def metric(url: str, name: str, labels: str = "") -> float:
    """The value of one sample on the worker's /metrics (0 when absent)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    pattern = re.compile(rf"^{re.escape(name)}{re.escape(labels)} (\S+)$", re.MULTILINE)
    match = pattern.search(text)
    return float(match.group(1)) if match else 0.0


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
