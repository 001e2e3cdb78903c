"""Where the editor publishes progress events besides the SSE stream of the request itself.

`ProgressSink` is what the serving layer calls for every event (on the event loop, never blocking).
`RedisProgressPublisher` sends them, in order, to the Redis pub/sub channel ``replan:progress:<job id>``
when `REPLAN_EDITOR_REDIS_URL` is set, so a gateway that did not open the SSE stream can still follow a
job. Publishing is best effort: a Redis outage is logged once as a WARNING and never fails an edit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from replan_common.protocol import ProgressEvent
from replan_editor.protocol import progress_channel

logger = logging.getLogger(__name__)


class ProgressSink(Protocol):
    def publish(self, event: ProgressEvent) -> None: ...

    async def aclose(self) -> None: ...


class RedisProgressPublisher:
    """Publishes events in order from one background task; started lazily on the running loop."""

    def __init__(self, url: str, *, max_pending: int = 10_000) -> None:
        self._url = url
        self._max_pending = max_pending
        self._queue: asyncio.Queue[ProgressEvent] | None = None
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def publish(self, event: ProgressEvent) -> None:
        if self._queue is None:
            self._queue = asyncio.Queue(maxsize=self._max_pending)
            self._task = asyncio.get_running_loop().create_task(self._drain(self._queue))
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self._warn_once("progress events are piling up faster than Redis takes them; dropping")

    async def _drain(self, queue: asyncio.Queue[ProgressEvent]) -> None:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.Redis.from_url(self._url)
        try:
            while True:
                event = await queue.get()
                try:
                    await client.publish(progress_channel(event.job_id), event.model_dump_json())
                except (RedisError, OSError) as exc:
                    self._warn_once(f"publishing progress to Redis failed ({type(exc).__name__}: {exc})")
        finally:
            await client.aclose()

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("%s; SSE streams are unaffected", message)

    async def aclose(self) -> None:
        if self._task is not None:
            if self._queue is not None:
                # Let already queued events out before stopping (bounded: Redis may be gone).
                for _ in range(50):
                    if self._queue.empty():
                        break
                    await asyncio.sleep(0.01)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
