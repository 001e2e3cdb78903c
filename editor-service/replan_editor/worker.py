"""The GPU job runner: one pipeline, one device thread, one edit at a time, a bounded wait queue.

Lifecycle, as in LitServe: `start()` runs `setup` (load the pipeline, then warm it up) on the device
thread in the background, so the HTTP server answers `/healthz` at once and `/readyz` says ``loading``
until it is done (or ``failed`` with the reason). `admit()` takes a queue slot or raises `QueueFull`;
`run()` waits for the device and runs `predict` on the device thread, never on the event loop. Requests
are decoded before and encoded after (see `serving`); this module knows nothing of HTTP.

Errors never kill the worker: GPU out-of-memory becomes `GpuOutOfMemory` (503 with Retry-After) after the
CUDA cache is emptied; a job whose awaiting coroutine is cancelled (the client went away) leaves the queue,
or, when running, is stopped between denoising steps through `should_stop`, and the device is handed to
the next job only once the pipeline has returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from PIL import Image

from replan_common.errors import GpuOutOfMemory, QueueFull, ReplanError, ServiceUnavailable
from replan_common.plan import Region, RegionPlan
from replan_common.protocol import Backbone, EditSettings, ProgressEvent, ProgressStage
from replan_editor.metrics import EditorMetrics, EditOutcome

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int], None]


class EditResultLike(Protocol):
    """What the worker reads from a pipeline's result."""

    image: Image.Image
    plan: RegionPlan
    settings: EditSettings
    timings_ms: dict[str, float]


class EditPipeline(Protocol):
    """What the worker needs from a region-edit pipeline (`replan_editor.pipelines.RegionEditPipeline`)."""

    backbone: Backbone

    def resolve_settings(self, settings: EditSettings) -> EditSettings: ...

    def edit(
        self,
        image: Image.Image,
        plan: RegionPlan,
        settings: EditSettings,
        *,
        on_step: StepCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> EditResultLike: ...


class WorkerState(str, Enum):
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True)
class EditJob:
    """One decoded, validated edit: what `predict` runs. `settings` are already resolved."""

    job_id: str
    image: Image.Image
    plan: RegionPlan
    settings: EditSettings
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EditOutput:
    """A finished edit: the image at the input's size, the plan and settings as applied, timings."""

    job_id: str
    image: Image.Image
    plan: RegionPlan
    settings: EditSettings
    timings_ms: dict[str, float]


class Ticket:
    """A place in the wait queue, taken by `EditorWorker.admit()` and released exactly once.

    `EditorWorker.run` claims it and then owns its release (a cancelled running job keeps its place until
    the device thread returns); an unclaimed ticket is released by whoever took it (`release_unclaimed`).
    """

    def __init__(self, worker: EditorWorker) -> None:
        self._worker = worker
        self._released = False
        self._claimed = False

    def claim(self) -> None:
        if self._claimed or self._released:
            raise RuntimeError("this ticket was already used")
        self._claimed = True

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._worker._leave_queue()

    def release_unclaimed(self) -> None:
        if not self._claimed:
            self.release()

    @property
    def released(self) -> bool:
        return self._released


class EditorWorker:
    """Owns the pipeline and the single device thread that loads it and runs every edit."""

    def __init__(
        self,
        loader: Callable[[], EditPipeline],
        *,
        device: str,
        max_queue: int,
        metrics: EditorMetrics,
        warmup: Callable[[EditPipeline], None] | None = None,
        queue_retry_after_s: float = 5.0,
        oom_retry_after_s: float = 10.0,
        loading_retry_after_s: float = 10.0,
    ) -> None:
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0 (edits allowed to wait), got {max_queue}")
        self._loader = loader
        self._warmup = warmup
        self.device = device
        self.max_queue = max_queue
        self.metrics = metrics
        self.queue_retry_after_s = queue_retry_after_s
        self.oom_retry_after_s = oom_retry_after_s
        self.loading_retry_after_s = loading_retry_after_s
        self._state = WorkerState.LOADING
        self._stopping = threading.Event()
        self._failure: str | None = None
        self._pipeline: EditPipeline | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._device_lock: asyncio.Lock | None = None
        self._admitted = 0  # waiting + running
        self._running = 0
        self.load_seconds: float | None = None
        self.warmup_seconds: float | None = None
        metrics.read_gpu_memory_with(self._gpu_memory_bytes)

    # ---------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start loading in the background on the device thread; returns at once."""
        if self._executor is not None:
            raise RuntimeError("EditorWorker.start() was already called")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="replan-editor-device")
        self._executor.submit(self._setup)

    def shutdown(self) -> None:
        """Stop taking work and stop a running edit at its next step (the thread is not joined)."""
        if self._state is not WorkerState.FAILED:
            self._state = WorkerState.STOPPED
        self._stopping.set()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _setup(self) -> None:
        started = time.perf_counter()
        try:
            pipeline = self._loader()
            if self._warmup is not None:
                warm_started = time.perf_counter()
                self._warmup(pipeline)
                self.warmup_seconds = time.perf_counter() - warm_started
                logger.info("warm-up edit done in %.1f s", self.warmup_seconds)
        except BaseException as exc:  # a failed load must be reported, not kill the thread silently
            self._failure = f"{type(exc).__name__}: {exc}"
            self._state = WorkerState.FAILED
            logger.exception("loading the pipeline failed; /readyz reports it")
            return
        self._pipeline = pipeline
        self.load_seconds = time.perf_counter() - started
        if self._state is WorkerState.LOADING:
            self._state = WorkerState.READY
        logger.info("pipeline ready on %s after %.1f s", self.device, self.load_seconds)

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def failure(self) -> str | None:
        """Why loading failed (exception type and message), when it did."""
        return self._failure

    @property
    def pipeline(self) -> EditPipeline:
        """The loaded pipeline; raises `ServiceUnavailable` while loading or after a failed load."""
        self.require_ready()
        assert self._pipeline is not None
        return self._pipeline

    def require_ready(self) -> None:
        if self._state is WorkerState.READY:
            return
        if self._state is WorkerState.LOADING:
            raise ServiceUnavailable(
                "the editor is still loading its model; retry shortly",
                code="model_loading",
                retry_after_s=self.loading_retry_after_s,
            )
        if self._state is WorkerState.FAILED:
            raise ServiceUnavailable(
                f"the editor failed to load its model ({self._failure}); see its log", code="model_load_failed"
            )
        raise ServiceUnavailable("the editor is shutting down", code="shutting_down", retry_after_s=1)

    # ----------------------------------------------------------------------------------- queueing

    @property
    def queue_depth(self) -> int:
        """Edits admitted and waiting for the device."""
        return self._admitted - self._running

    def admit(self) -> Ticket:
        """Take a place in the queue (or the device, if idle); raises `QueueFull` when none is left."""
        self.require_ready()
        if self._admitted >= self.max_queue + 1:
            self.metrics.count(EditOutcome.QUEUE_FULL)
            raise QueueFull(
                f"the editor is busy: 1 edit running and {self.queue_depth} waiting "
                f"(max_queue={self.max_queue}); retry later or send it to another worker",
                retry_after_s=self.queue_retry_after_s,
            )
        self._admitted += 1
        self._update_gauges()
        return Ticket(self)

    def _leave_queue(self) -> None:
        self._admitted -= 1
        self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.queue_depth.set(self.queue_depth)
        self.metrics.running.set(self._running)

    # ------------------------------------------------------------------------------------ running

    async def run(
        self,
        ticket: Ticket,
        job: EditJob,
        *,
        on_event: Callable[[ProgressEvent], None] | None = None,
    ) -> EditOutput:
        """Wait for the device, run `job` on it and return the output; the ticket is always released.

        `on_event` is called on the event loop with ``editing`` and one ``step`` event per denoising step.
        Cancelling the awaiting coroutine cancels the job (see the module docstring).
        """
        ticket.claim()
        loop = asyncio.get_running_loop()
        if self._device_lock is None:
            self._device_lock = asyncio.Lock()
        lock = self._device_lock
        queued_at = time.perf_counter()
        try:
            await lock.acquire()
        except asyncio.CancelledError:
            ticket.release()
            self.metrics.count(EditOutcome.CANCELLED)
            logger.info("job %s cancelled while queued", job.job_id)
            raise
        handed_off = False
        try:
            self._running += 1
            self._update_gauges()
            if self._state is not WorkerState.READY:
                self.require_ready()
            queue_s = time.perf_counter() - queued_at
            self.metrics.queue_wait_seconds.observe(queue_s)
            total = job.settings.steps
            emit = on_event or (lambda _event: None)
            emit(ProgressEvent(job_id=job.job_id, stage=ProgressStage.EDITING, step=0, total=total))

            def on_step(step: int, steps: int) -> None:  # on the device thread
                event = ProgressEvent(job_id=job.job_id, stage=ProgressStage.STEP, step=step, total=steps)
                # RuntimeError: the loop is closing (shutdown); nobody is listening any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(emit, event)

            stop = threading.Event()
            assert self._executor is not None
            stopping = self._stopping

            def should_stop() -> bool:
                return stop.is_set() or stopping.is_set()

            future = loop.run_in_executor(self._executor, self._predict, job, on_step, should_stop)
            try:
                result, edit_s = await asyncio.shield(future)
            except asyncio.CancelledError:
                stop.set()
                handed_off = True
                future.add_done_callback(lambda done: self._after_cancelled(done, lock, ticket, job.job_id))
                raise
            except BaseException as exc:
                if self._stopping.is_set() and not isinstance(exc, ReplanError):
                    self.metrics.count(EditOutcome.CANCELLED)
                    raise ServiceUnavailable(
                        "the editor shut down during this edit; retry on another worker",
                        code="shutting_down",
                        retry_after_s=1,
                    ) from exc
                self.metrics.count(_outcome_of(exc))
                raise
        finally:
            if not handed_off:
                self._finish(lock, ticket)
        self.metrics.count(EditOutcome.OK)
        self.metrics.edit_seconds.observe(edit_s)
        timings = {**job.timings_ms, **result.timings_ms, "queue_ms": queue_s * 1000, "edit_ms": edit_s * 1000}
        return EditOutput(
            job_id=job.job_id, image=result.image, plan=result.plan, settings=result.settings, timings_ms=timings
        )

    def _finish(self, lock: asyncio.Lock, ticket: Ticket) -> None:
        if lock.locked():
            lock.release()
        if self._running:
            self._running -= 1
        ticket.release()

    def _after_cancelled(self, done: asyncio.Future[object], lock: asyncio.Lock, ticket: Ticket, job_id: str) -> None:
        """The device thread has returned from a cancelled job: free the device for the next one."""
        exc = done.exception() if not done.cancelled() else None
        if isinstance(exc, GpuOutOfMemory):
            self.metrics.count(EditOutcome.GPU_OOM)
        else:
            self.metrics.count(EditOutcome.CANCELLED)
        logger.info("job %s cancelled while running (%s)", job_id, type(exc).__name__ if exc else "finished")
        self._finish(lock, ticket)

    def _predict(
        self, job: EditJob, on_step: StepCallback, should_stop: Callable[[], bool]
    ) -> tuple[EditResultLike, float]:
        """Run one edit on the device thread; turn out-of-memory into `GpuOutOfMemory`."""
        pipeline = self.pipeline
        started = time.perf_counter()
        last = [started]

        def timed_step(step: int, steps: int) -> None:
            now = time.perf_counter()
            if step > 1:  # the first interval includes prompt encoding; it is not a denoising step
                self.metrics.denoise_step_seconds.observe(now - last[0])
            last[0] = now
            on_step(step, steps)

        oom_message: str | None = None
        try:
            result = pipeline.edit(job.image, job.plan, job.settings, on_step=timed_step, should_stop=should_stop)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            oom_message = str(exc) or type(exc).__name__
        if oom_message is not None:
            # Outside the except block: the traceback (and the tensors its frames hold) is gone by now.
            self._release_device_memory()
            logger.warning("job %s ran out of device memory: %s", job.job_id, oom_message)
            # The client gets the first sentence only ("Tried to allocate 128.00 MiB."), not other processes'
            # ids and memory, which CUDA's message lists.
            first = oom_message.split(". GPU ")[0].splitlines()[0][:200]
            raise GpuOutOfMemory(
                f"the device ran out of memory during this edit ({first}); retry later or use a smaller image "
                "(settings.max_area)",
                retry_after_s=self.oom_retry_after_s,
            )
        return result, time.perf_counter() - started

    def _release_device_memory(self) -> None:
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _gpu_memory_bytes(self) -> float:
        torch = sys.modules.get("torch")
        if torch is None or not self.device.startswith("cuda") or not torch.cuda.is_initialized():
            return 0.0
        return float(torch.cuda.memory_reserved(self.device))


def is_out_of_memory(exc: BaseException) -> bool:
    """`torch.cuda.OutOfMemoryError`, or a RuntimeError saying "out of memory" (cuDNN, cuBLAS, MPS)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _outcome_of(exc: BaseException) -> EditOutcome:
    if isinstance(exc, GpuOutOfMemory):
        return EditOutcome.GPU_OOM
    if isinstance(exc, ReplanError) and exc.status < 500:
        return EditOutcome.CLIENT_ERROR
    return EditOutcome.ERROR


def warmup_job(size: tuple[int, int], steps: int) -> tuple[Image.Image, RegionPlan, EditSettings]:
    """A small edit at `size` (width, height) that runs the region-attention path (one box), for warm-up."""
    width, height = size
    image = Image.new("RGB", (width, height), (128, 128, 128))
    plan = RegionPlan(
        global_prompt="keep remaining part of image unchanged.",
        regions=(Region(bbox=(width / 4, height / 4, width * 3 / 4, height * 3 / 4), hint="a red square"),),
    )
    return image, plan, EditSettings(steps=steps, seed=0)


def make_warmup(sizes: list[tuple[int, int]], steps: int) -> Callable[[EditPipeline], None]:
    """The warm-up callable for `EditorWorker(warmup=...)`: one edit per size."""

    def warm_up(pipeline: EditPipeline) -> None:
        for size in sizes:
            image, plan, settings = warmup_job(size, steps)
            pipeline.edit(image, plan, pipeline.resolve_settings(settings))

    return warm_up


__all__ = [
    "EditJob",
    "EditOutput",
    "EditPipeline",
    "EditorWorker",
    "Ticket",
    "WorkerState",
    "is_out_of_memory",
    "make_warmup",
]
