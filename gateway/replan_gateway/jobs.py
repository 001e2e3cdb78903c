"""Async jobs as the gateway sees them: create (store, then queue), read, cancel, and stream their events.

The job store holds everything (`replan_common.jobs`), so a restarted gateway serves the same jobs; the
queue only carries job ids. `CeleryJobQueue` sends them to the `jobs` queue for a worker;
`InlineJobQueue` runs them on a thread of this process (tests and demos; a job running when the process
stops is left unfinished). Event streams replay the job's log from the start (or after `Last-Event-ID`),
then follow it live until a terminal event. A job is visible only to the key that created it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import anyio

from replan_common.context import get_request_id, reset_request_id, set_request_id
from replan_common.errors import ServiceUnavailable
from replan_common.jobs.models import JOBS_QUEUE, RUN_JOB_TASK, JobRecord
from replan_common.jobs.runner import JobUpstreams, run_job
from replan_common.jobs.sse import format_sse, sse_comment
from replan_common.jobs.store import JobNotFound, JobStore, new_job_id
from replan_common.protocol import ProgressStage
from replan_gateway.auth import Principal
from replan_gateway.image_input import ImageInput
from replan_gateway.metrics import GatewayMetrics
from replan_gateway.protocol import JobCreate

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FINAL_STAGES = frozenset({ProgressStage.DONE, ProgressStage.ERROR, ProgressStage.CANCELLED})


class JobQueue(Protocol):
    """Where job ids go to be run."""

    name: str

    def enqueue(self, job_id: str) -> None: ...

    def close(self) -> None: ...


class CeleryJobQueue:
    """Sends the job id to the `jobs` queue; the task is addressed by name (the gateway imports no tasks)."""

    name = "celery"

    def __init__(self, celery_app: Any) -> None:
        self._app = celery_app

    def enqueue(self, job_id: str) -> None:
        self._app.send_task(RUN_JOB_TASK, args=[job_id], queue=JOBS_QUEUE, task_id=job_id)

    def close(self) -> None:
        return None


class InlineJobQueue:
    """Runs jobs one at a time on a thread of this process."""

    name = "inline"

    def __init__(self, store: JobStore, upstreams: JobUpstreams) -> None:
        self._store = store
        self._upstreams = upstreams
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replan-job")

    def enqueue(self, job_id: str) -> None:
        self._pool.submit(self._run, job_id)

    def recover(self) -> list[str]:
        """Queue again the jobs left unfinished by a previous run of this process (inline: it was the only runner)."""
        ids = self._store.active_job_ids()
        for job_id in ids:
            self.enqueue(job_id)
        if ids:
            logger.warning("resuming %d unfinished job(s) from the store", len(ids))
        return ids

    def _run(self, job_id: str) -> None:
        record = self._store.get(job_id)
        token = set_request_id(record.request_id if record else None)
        try:
            run_job(job_id, store=self._store, upstreams=self._upstreams)
        except Exception:
            logger.exception("inline job %s failed", job_id)
        finally:
            reset_request_id(token)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def _off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking store or queue call on a worker thread."""
    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


class JobService:
    """Create, read, cancel and follow jobs."""

    def __init__(
        self,
        store: JobStore,
        queue: JobQueue,
        images: ImageInput,
        *,
        poll_interval_s: float = 0.2,
        keepalive_s: float = 15.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.queue = queue
        self.images = images
        self.poll_interval_s = poll_interval_s
        self.keepalive_s = keepalive_s

    async def create(self, body: JobCreate, principal: Principal) -> JobRecord:
        image = await self.images.resolve(body.image)
        spec = body.to_spec(image)
        record = JobRecord(
            id=new_job_id(), kind=spec.kind, spec=spec, owner=principal.name, request_id=get_request_id()
        )
        record = await _off_loop(self.store.create, record)
        try:
            await _off_loop(self.queue.enqueue, record.id)
        except Exception as exc:
            logger.exception("could not queue job %s", record.id)
            error = ServiceUnavailable(
                f"the job could not be queued ({type(exc).__name__}); is the broker up?",
                code="queue_unavailable",
                retry_after_s=5,
            )
            await _off_loop(self.store.fail, record.id, error)
            raise error from exc
        if self.metrics is not None:
            self.metrics.jobs_created.labels(record.kind.value).inc()
        logger.info("job %s (%s) queued for %s", record.id, record.kind.value, principal.name)
        return record

    async def get(self, job_id: str, principal: Principal) -> JobRecord:
        record = await _off_loop(self.store.get, job_id)
        if record is None or record.owner != principal.name:
            raise JobNotFound(f"no job {job_id} (it never existed, expired, or belongs to another key)", param="id")
        return record

    async def cancel(self, job_id: str, principal: Principal) -> JobRecord:
        await self.get(job_id, principal)
        return await _off_loop(self.store.cancel, job_id)

    async def events(self, job_id: str, principal: Principal, *, last_event_id: str | None) -> AsyncIterator[str]:
        """Check access and the event id now (so errors are HTTP errors), then return the SSE text stream."""
        await self.get(job_id, principal)
        await _off_loop(self.store.events, job_id, after=last_event_id, limit=1)
        return self._follow(job_id, last_event_id)

    async def _follow(self, job_id: str, after: str | None) -> AsyncIterator[str]:
        last_sent = time.monotonic()
        yield sse_comment(f"events of {job_id}")
        while True:
            events = await _off_loop(self.store.events, job_id, after=after)
            for event in events:
                after = event.id
                yield format_sse(event.model_dump_json(exclude_none=True), event=event.stage.value, id=event.id)
                if event.stage in _FINAL_STAGES:
                    return
            if events:
                last_sent = time.monotonic()
                continue
            record = await _off_loop(self.store.get, job_id)
            if record is None:
                return  # expired
            if record.status.is_terminal:
                # Either the client already has the final event (it sent its id), or it landed just now.
                for event in await _off_loop(self.store.events, job_id, after=after):
                    yield format_sse(event.model_dump_json(exclude_none=True), event=event.stage.value, id=event.id)
                return
            if time.monotonic() - last_sent > self.keepalive_s:
                last_sent = time.monotonic()
                yield sse_comment("keep-alive")
            await asyncio.sleep(self.poll_interval_s)
