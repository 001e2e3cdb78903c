"""Per-request plumbing: request id in and out, one access-log line, latency metrics, body-size limit.

Pure ASGI middleware (not `BaseHTTPMiddleware`) so streaming responses (SSE) pass straight through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from replan_common.context import REQUEST_ID_HEADER, new_request_id, reset_request_id, set_request_id
from replan_common.errors import PayloadTooLarge
from replan_common.http.errors import error_response
from replan_common.metrics import ServiceMetrics

logger = logging.getLogger("replan.access")

_HEADER = REQUEST_ID_HEADER.lower().encode()


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class RequestContextMiddleware:
    """Assigns the request id, enforces `max_body_bytes`, logs one line and records latency per route."""

    def __init__(self, app: ASGIApp, *, metrics: ServiceMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def _reject(self, declared: int | None, scope: Scope, receive: Receive, send: Send) -> None:
        size = f"{declared} bytes" if declared is not None else "larger than that"
        error = PayloadTooLarge(
            f"request body is {size}; the limit is {self.max_body_bytes} bytes", code="request_too_large"
        )
        await error_response(error)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(_HEADER, b"").decode("latin-1").strip()
        request_id = incoming[:128] if incoming else new_request_id()
        token = set_request_id(request_id)
        started = time.perf_counter()
        status: dict[str, int] = {"code": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                raw_headers = list(message.get("headers") or [])
                raw_headers.append((_HEADER, request_id.encode()))
                message = {**message, "headers": raw_headers}
            await send(message)

        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit():
                if int(declared) > self.max_body_bytes:
                    await self._reject(int(declared), scope, receive, send_with_id)
                    return
                await self.app(scope, receive, send_with_id)
                return
            # No declared length (chunked): buffer up to the limit, then replay to the app.
            body, more = await _read_up_to(receive, self.max_body_bytes)
            if more:
                await self._reject(None, scope, receive, send_with_id)
                return
            await self.app(scope, _replay(body, receive), send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            self.metrics.observe_request(scope.get("method", "GET"), route, status["code"], elapsed)
            if route not in ("/metrics", "/healthz", "/readyz"):
                logger.info(
                    "%s %s -> %d in %.1f ms",
                    scope.get("method"),
                    scope.get("path"),
                    status["code"],
                    elapsed * 1000,
                    extra={"status": status["code"], "latency_ms": round(elapsed * 1000, 2), "route": route},
                )
            reset_request_id(token)


async def _read_up_to(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Read the request body; stop once it exceeds `limit`. Returns (body, exceeded)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[MutableMapping[str, Any]]]:
    """A `receive` that hands the buffered body over once, then defers to the real channel (disconnects)."""
    sent = False

    async def wrapped() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return wrapped
