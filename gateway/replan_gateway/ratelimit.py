"""Per-key rate limits: a fixed window of `limit` requests per `window_s` seconds.

`RedisRateLimiter` keeps the counters in Redis (`INCR` + `EXPIRE` on `replan:ratelimit:<key>:<window>`),
so every gateway replica shares them; `MemoryRateLimiter` keeps them in this process for the embedded
stack. Over the limit is a `RateLimited` (429) whose Retry-After is the time to the next window.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol

from replan_common.errors import RateLimited, ServiceUnavailable


class RateLimiter(Protocol):
    async def hit(self, key: str, *, limit: int) -> None:
        """Count one request for `key`; raise `RateLimited` when it is over `limit` in this window."""

    async def aclose(self) -> None: ...


def _window(window_s: int, now: float) -> tuple[int, float]:
    """The current window's number and the seconds left in it."""
    index = int(now // window_s)
    return index, (index + 1) * window_s - now


def _limited(key_name: str, limit: int, window_s: int, retry_after_s: float) -> RateLimited:
    return RateLimited(
        f"rate limit of {limit} requests per {window_s} s reached for key '{key_name}'; "
        f"retry in {math.ceil(retry_after_s)} s",
        retry_after_s=max(1.0, retry_after_s),
    )


class MemoryRateLimiter:
    """In-process counters (one gateway process, e.g. `replan up`)."""

    def __init__(self, *, window_s: int) -> None:
        self.window_s = window_s
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = asyncio.Lock()

    async def hit(self, key: str, *, limit: int) -> None:
        index, left = _window(self.window_s, time.time())
        async with self._lock:
            for stale in [k for k in self._counts if k[1] < index]:
                del self._counts[stale]
            count = self._counts.get((key, index), 0) + 1
            self._counts[(key, index)] = count
        if count > limit:
            raise _limited(key, limit, self.window_s, left)

    async def aclose(self) -> None:
        return None


class RedisRateLimiter:
    """Counters in Redis, shared by all gateway replicas."""

    def __init__(self, url: str, *, window_s: int, prefix: str = "replan:ratelimit:") -> None:
        import redis.asyncio as aioredis

        self.window_s = window_s
        self.prefix = prefix
        self._redis = aioredis.Redis.from_url(url)

    async def hit(self, key: str, *, limit: int) -> None:
        from redis.exceptions import RedisError

        index, left = _window(self.window_s, time.time())
        name = f"{self.prefix}{key}:{index}"
        try:
            pipe = self._redis.pipeline(transaction=True)
            pipe.incr(name)
            pipe.expire(name, self.window_s + 1)
            count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise ServiceUnavailable(
                f"the rate limiter (Redis) is unreachable ({type(exc).__name__})",
                code="rate_limiter_unavailable",
                retry_after_s=5,
            ) from exc
        if int(count) > limit:
            raise _limited(key, limit, self.window_s, left)

    async def aclose(self) -> None:
        await self._redis.aclose()
