"""Upstream pools: which planner or editor worker gets a call, and what happens when one fails.

Each pool picks the available worker with the fewest outstanding requests (ties broken at random, so idle
workers share the load). A worker that cannot be reached, or answers 5xx, is taken out for `cooldown_s`
and then tried again; active health checks (`GET /readyz` every `health_interval_s`) take workers out
while they load or fail and put them back when they are ready. An idempotent call that fails that way is
retried once on another worker; a full queue (429) also moves on. When no worker is left the pool raises
a 503 whose code names the service (`planner_unavailable`, `editor_unavailable`).

A pool given an `info_path` also learns what each worker serves (the editor's `GET /v1/info` names its
backbone) when it first answers ready, so a call that needs one backbone goes only to workers serving it:
one gateway can front a mixed pool of FLUX.1 Kontext and Qwen-Image-Edit workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import httpx

from replan_common.errors import QueueFull, ReplanError, ServiceUnavailable, UpstreamError
from replan_common.http.client import NO_RETRY, AsyncServiceClient
from replan_gateway.metrics import GatewayMetrics

logger = logging.getLogger(__name__)


class WorkerHealth(str, Enum):
    UNKNOWN = "unknown"
    READY = "ready"
    NOT_READY = "not_ready"
    DOWN = "down"


@dataclass
class Worker:
    """One upstream process and what the pool knows about it."""

    url: str
    client: AsyncServiceClient
    health: WorkerHealth = WorkerHealth.UNKNOWN
    outstanding: int = 0
    down_until: float = 0.0
    failures: int = 0
    last_error: str | None = None
    backbone: str | None = None  # learned from `info_path`; None until then

    def available(self, now: float) -> bool:
        if self.health is WorkerHealth.NOT_READY:
            return False
        return now >= self.down_until


@dataclass(frozen=True)
class WorkerStatus:
    url: str
    health: str
    available: bool
    outstanding: int
    failures: int
    last_error: str | None


class WorkerPool:
    """Least-outstanding-requests balancing over one service's workers."""

    def __init__(
        self,
        service: str,
        urls: Sequence[str],
        *,
        timeout_s: float = 60.0,
        cooldown_s: float = 10.0,
        health_timeout_s: float = 2.0,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: GatewayMetrics | None = None,
        info_path: str | None = None,
    ) -> None:
        if not urls:
            raise ValueError(f"the {service} pool needs at least one URL")
        self.service = service
        self.cooldown_s = cooldown_s
        self.health_timeout_s = health_timeout_s
        self.metrics = metrics
        self.info_path = info_path
        self.workers = [
            Worker(
                url=url,
                client=AsyncServiceClient(
                    url, service=service, timeout_s=timeout_s, retry=NO_RETRY, transport=transport
                ),
            )
            for url in urls
        ]

    # ---------------------------------------------------------------------------------------- picking

    def pick(self, exclude: set[str] | None = None, *, backbone: str | None = None) -> Worker:
        """The available worker with the fewest outstanding calls (serving `backbone`, if given); 503 if none.

        Workers whose backbone is not known yet are used only when no worker is known to serve it.
        """
        now = time.monotonic()
        candidates = [w for w in self.workers if w.available(now) and w.url not in (exclude or set())]
        if backbone is not None:
            if not any(w.backbone in (backbone, None) for w in self.workers):
                served = sorted({w.backbone for w in self.workers if w.backbone})
                raise ServiceUnavailable(
                    f"no {self.service} worker serves backbone {backbone!r} (served: {', '.join(served)})",
                    code="backbone_unavailable",
                    param="settings.backbone",
                )
            known = [w for w in candidates if w.backbone == backbone]
            candidates = known or [w for w in candidates if w.backbone is None]
        if not candidates:
            raise self._none_available(tried=bool(exclude))
        fewest = min(w.outstanding for w in candidates)
        return random.choice([w for w in candidates if w.outstanding == fewest])

    def _none_available(self, *, tried: bool) -> ServiceUnavailable:
        reasons = "; ".join(f"{w.url}: {w.last_error or w.health.value}" for w in self.workers)
        what = "no other" if tried else "no"
        return ServiceUnavailable(
            f"{what} {self.service} worker is available ({reasons})",
            code=f"{self.service}_unavailable",
            retry_after_s=max(1.0, self.cooldown_s),
        )

    # ----------------------------------------------------------------------------------------- calling

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool = True,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
        backbone: str | None = None,
    ) -> httpx.Response:
        """Send to one worker (serving `backbone`, if given); on an outage or 5xx, once more to another if
        `idempotent`. Raises typed errors."""
        tried: set[str] = set()
        attempts = 2 if idempotent else 1
        last: ReplanError | None = None
        for _ in range(min(attempts, len(self.workers))):
            try:
                worker = self.pick(exclude=tried, backbone=backbone)
            except ServiceUnavailable:
                if last is not None:
                    raise last from None
                raise
            tried.add(worker.url)
            self._outstanding(worker, +1)
            try:
                response = await worker.client.request(
                    method, path, json=json, idempotent=idempotent, timeout_s=timeout_s, headers=headers
                )
            except (ServiceUnavailable, UpstreamError) as exc:
                self._count(worker, exc.code)
                self._mark_failed(worker, exc)
                last = exc
                continue
            except QueueFull as exc:
                self._count(worker, exc.code)
                last = exc  # busy, not broken: try another worker, but do not take this one out
                continue
            except ReplanError as exc:
                self._count(worker, exc.code)
                raise
            finally:
                self._outstanding(worker, -1)
            self._count(worker, "ok")
            self._mark_ok(worker)
            return response
        assert last is not None
        raise last

    def _outstanding(self, worker: Worker, delta: int) -> None:
        worker.outstanding += delta
        if self.metrics is not None:
            self.metrics.worker_outstanding.labels(self.service, worker.url).set(worker.outstanding)

    def _count(self, worker: Worker, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.upstream_calls.labels(self.service, worker.url, outcome).inc()

    def _mark_failed(self, worker: Worker, error: ReplanError) -> None:
        worker.failures += 1
        worker.last_error = f"{error.code}: {error.message}"[:300]
        worker.down_until = time.monotonic() + self.cooldown_s
        if worker.health is not WorkerHealth.DOWN:
            logger.warning(
                "%s worker %s failed (%s); out for %.0f s", self.service, worker.url, error.code, self.cooldown_s
            )
        worker.health = WorkerHealth.DOWN

    def _mark_ok(self, worker: Worker) -> None:
        worker.failures = 0
        worker.last_error = None
        worker.down_until = 0.0
        if worker.health is WorkerHealth.DOWN:
            worker.health = WorkerHealth.UNKNOWN

    # ----------------------------------------------------------------------------------------- health

    async def check_health(self) -> None:
        """Probe every worker's `/readyz` once (concurrently)."""
        await asyncio.gather(*(self._probe(w) for w in self.workers))
        if self.metrics is not None:
            for worker in self.workers:
                ready = 1 if worker.health is WorkerHealth.READY else 0
                self.metrics.worker_ready.labels(self.service, worker.url).set(ready)

    async def _probe(self, worker: Worker) -> None:
        try:
            await worker.client.request("GET", "/readyz", timeout_s=self.health_timeout_s)
        except ServiceUnavailable as exc:
            if exc.code == f"{self.service}_unavailable":  # nothing answered
                if worker.health is not WorkerHealth.DOWN:
                    logger.warning("%s worker %s is unreachable; out until it answers", self.service, worker.url)
                worker.health = WorkerHealth.DOWN
                worker.last_error = "unreachable"
            else:  # answered 503: loading, failed or degraded
                if worker.health is not WorkerHealth.NOT_READY:
                    logger.warning("%s worker %s is not ready (%s)", self.service, worker.url, exc.message)
                worker.health = WorkerHealth.NOT_READY
                worker.last_error = f"not ready: {exc.message}"[:300]
            return
        except ReplanError as exc:
            worker.health = WorkerHealth.NOT_READY
            worker.last_error = f"readiness check failed: {exc.code}"
            return
        if worker.health is not WorkerHealth.READY:
            logger.info("%s worker %s is ready", self.service, worker.url)
            if self.info_path is not None:  # (re)learn on every transition: a restarted worker may serve another
                await self._learn_backbone(worker)
        worker.health = WorkerHealth.READY
        worker.down_until = 0.0
        worker.last_error = None

    async def _learn_backbone(self, worker: Worker) -> None:
        assert self.info_path is not None
        try:
            info = (await worker.client.request("GET", self.info_path, timeout_s=self.health_timeout_s)).json()
        except (ReplanError, ValueError) as exc:
            logger.warning("%s worker %s: %s unreadable (%s)", self.service, worker.url, self.info_path, exc)
            return
        backbone = info.get("backbone") if isinstance(info, dict) else None
        worker.backbone = str(backbone) if backbone else None

    async def run_health_checks(self, interval_s: float) -> None:
        """Probe forever (cancel the task to stop)."""
        while True:
            try:
                await self.check_health()
            except Exception:  # a probe bug must not end health checking; it is logged
                logger.exception("%s health check failed", self.service)
            await asyncio.sleep(interval_s)

    # ----------------------------------------------------------------------------------------- status

    @property
    def ready_count(self) -> int:
        return sum(1 for w in self.workers if w.health is WorkerHealth.READY)

    def status(self) -> list[WorkerStatus]:
        now = time.monotonic()
        return [
            WorkerStatus(
                url=w.url,
                health=w.health.value,
                available=w.available(now),
                outstanding=w.outstanding,
                failures=w.failures,
                last_error=w.last_error,
            )
            for w in self.workers
        ]

    async def aclose(self) -> None:
        await asyncio.gather(*(w.client.aclose() for w in self.workers))
