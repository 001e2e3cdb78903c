"""Helpers of the planner service tests: test images, recorded vLLM responses, a replaying upstream.

A plain module (not conftest) so tests can import the helpers by name.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import zlib
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

RECORDINGS = Path(__file__).parent / "recordings"


def recording(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


@cache
def png_bytes(width: int, height: int, color: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    image = Image.new("RGB", (width, height), color)
    image.paste((230, 230, 230), (width // 3, height // 3, 2 * width // 3, 2 * height // 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` but carries no pixels: a decompression bomb's calling card.

    Decoders must refuse it from the header alone, before allocating width * height pixels.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def png_b64(width: int, height: int) -> str:
    return base64.b64encode(png_bytes(width, height)).decode("ascii")


#: One scripted upstream answer: (HTTP status, JSON body), or an httpx exception to raise.
Step = tuple[int, dict[str, Any]] | Exception


@dataclass
class ReplayUpstream:
    """An OpenAI-compatible upstream at the HTTP layer: answers chat completions from a script, in order
    (the last step repeats), `GET /models` from the recording, and keeps every chat request it got."""

    script: list[Step]
    chat_requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[httpx.Headers] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=recording("models.json"))
        assert request.url.path.endswith("/chat/completions"), request.url
        self.chat_requests.append(json.loads(request.content))
        self.headers.append(request.headers)
        step = self.script[min(len(self.chat_requests) - 1, len(self.script) - 1)]
        if isinstance(step, Exception):
            raise step
        status, body = step
        return httpx.Response(status, json=body)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


class StubVLLM:
    """A tiny real HTTP server on loopback that replays recorded vLLM answers (`/v1/models`,
    `/v1/chat/completions`), for tests that run the planner as a separate process."""

    def __init__(self, chat: tuple[int, dict[str, Any]]) -> None:
        self.chat = chat
        self.chat_requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._send(200, recording("models.json")) if self.path == "/v1/models" else self._send(404, {})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                stub.chat_requests.append(json.loads(self.rfile.read(length)))
                self._send(*stub.chat)

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> StubVLLM:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
