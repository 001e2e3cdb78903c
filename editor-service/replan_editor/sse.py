"""HTTP plumbing for long edits: a server-sent-event response that always cleans up, and cancelling a
handler's work when its client disconnects (SSE framing itself is shared: `replan_common.jobs.sse`).

Starlette does not cancel a plain (non-streaming) handler when the client goes away, so an edit would keep
the device busy for nobody; `run_until_disconnected` races the work against the ASGI ``http.disconnect``
message and cancels it. For streams, `EventStreamResponse` calls `on_close` however the response ends
(finished, client gone, or never started), so a queue slot is never leaked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

T = TypeVar("T")

#: Status logged for a request whose client went away before the answer (nginx's convention).
CLIENT_CLOSED_REQUEST = 499


class EventStreamResponse(StreamingResponse):
    """`text/event-stream` response that calls `on_close()` exactly once when the response is over."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[], None], headers: dict[str, str]) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client disconnects (call only after the request body has been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class ClientDisconnected(Exception):
    """The client went away before the answer was ready; the work was cancelled."""


async def run_until_disconnected(receive: Receive, work: Callable[[], Awaitable[T]]) -> T:
    """Await `work()`; if the client disconnects first, cancel it and raise `ClientDisconnected`."""
    task: asyncio.Task[T] = asyncio.ensure_future(work())
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnected()
