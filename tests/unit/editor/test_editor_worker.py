"""The editor's job runner driven directly: queue bound, out-of-memory, cancellation, load failures.

The pipeline here is a stand-in for the GPU (it can raise `torch.cuda.OutOfMemoryError` on demand and block
between steps), not for any of our services; the service tests run the real tiny pipelines.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from PIL import Image

from replan_common.errors import GpuOutOfMemory, InvalidRules, QueueFull, ServiceUnavailable
from replan_common.metrics import ServiceMetrics
from replan_common.plan import RegionPlan
from replan_common.protocol import Backbone, EditSettings, ProgressEvent, ProgressStage
from replan_editor.metrics import EditorMetrics, EditOutcome
from replan_editor.worker import EditJob, EditorWorker, WorkerState, is_out_of_memory, make_warmup


class StandInCancelled(Exception):
    pass


@dataclass
class StandInResult:
    image: Image.Image
    plan: RegionPlan
    settings: EditSettings
    timings_ms: dict[str, float] = field(default_factory=dict)


class StandInGpuPipeline:
    """Counts steps; `fail_with` raises on the next edit; `gate` (when set) holds every step until opened."""

    backbone = Backbone.FLUX_KONTEXT

    def __init__(self) -> None:
        self.fail_with: BaseException | None = None
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.edits = 0
        self.stopped = 0

    def resolve_settings(self, settings: EditSettings) -> EditSettings:
        return settings.model_copy(update={"steps": settings.steps or 3, "backbone": self.backbone})

    def edit(
        self,
        image: Image.Image,
        plan: RegionPlan,
        settings: EditSettings,
        *,
        on_step: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> StandInResult:
        self.started.set()
        if self.fail_with is not None:
            exc, self.fail_with = self.fail_with, None
            raise exc
        steps = settings.steps or 3
        for step in range(1, steps + 1):
            if self.gate is not None:
                while not self.gate.wait(0.01):
                    if should_stop is not None and should_stop():
                        self.stopped += 1
                        raise StandInCancelled()
            if should_stop is not None and should_stop():
                self.stopped += 1
                raise StandInCancelled()
            if on_step is not None:
                on_step(step, steps)
        self.edits += 1
        return StandInResult(image=image, plan=plan, settings=settings, timings_ms={"denoise_ms": 1.0})


def make_worker(
    pipeline: StandInGpuPipeline | None = None,
    *,
    max_queue: int = 1,
    loader: Callable[[], StandInGpuPipeline] | None = None,
) -> tuple[EditorWorker, StandInGpuPipeline, EditorMetrics]:
    pipe = pipeline or StandInGpuPipeline()
    metrics = EditorMetrics(ServiceMetrics("editor"))
    worker = EditorWorker(loader or (lambda: pipe), device="cpu", max_queue=max_queue, metrics=metrics)
    return worker, pipe, metrics


def wait_ready(worker: EditorWorker, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while worker.state is WorkerState.LOADING and time.monotonic() < deadline:
        time.sleep(0.005)


def job(job_id: str = "j", steps: int = 3) -> EditJob:
    return EditJob(
        job_id=job_id,
        image=Image.new("RGB", (16, 16)),
        plan=RegionPlan(global_prompt="x"),
        settings=EditSettings(steps=steps),
    )


def count(metrics: EditorMetrics, outcome: EditOutcome) -> float:
    return metrics.edits.labels(outcome.value)._value.get()


async def submit(worker: EditorWorker, the_job: EditJob, events: list[ProgressEvent] | None = None):  # type: ignore[no-untyped-def]
    ticket = worker.admit()
    return await worker.run(ticket, the_job, on_event=events.append if events is not None else None)


def test_edit_reports_editing_then_every_step_in_order() -> None:
    worker, _, metrics = make_worker()
    worker.start()
    wait_ready(worker)
    events: list[ProgressEvent] = []

    async def go() -> None:
        output = await submit(worker, job(steps=3), events)
        await asyncio.sleep(0.05)  # step events are delivered through the loop
        assert output.timings_ms["denoise_ms"] == 1.0
        assert "queue_ms" in output.timings_ms and "edit_ms" in output.timings_ms

    asyncio.run(go())
    assert [(e.stage, e.step, e.total) for e in events] == [
        (ProgressStage.EDITING, 0, 3),
        (ProgressStage.STEP, 1, 3),
        (ProgressStage.STEP, 2, 3),
        (ProgressStage.STEP, 3, 3),
    ]
    assert count(metrics, EditOutcome.OK) == 1
    assert worker.queue_depth == 0
    worker.shutdown()


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which "
            "1.2 GiB is free. Process 643 has 77.9 GiB memory in use."
        ),
        RuntimeError("CUDA error: out of memory"),
    ],
    ids=["OutOfMemoryError", "RuntimeError"],
)
def test_out_of_memory_is_a_503_with_retry_after_and_the_worker_stays_up(error: BaseException) -> None:
    worker, pipe, metrics = make_worker()
    worker.start()
    wait_ready(worker)
    pipe.fail_with = error

    async def go() -> None:
        with pytest.raises(GpuOutOfMemory) as caught:
            await submit(worker, job("oom"))
        assert caught.value.status == 503
        assert caught.value.code == "gpu_out_of_memory"
        assert caught.value.retry_after_s == worker.oom_retry_after_s
        assert "out of memory" in caught.value.message and "Process" not in caught.value.message
        output = await submit(worker, job("after"))
        assert output.job_id == "after"

    asyncio.run(go())
    assert count(metrics, EditOutcome.GPU_OOM) == 1
    assert count(metrics, EditOutcome.OK) == 1
    worker.shutdown()


def test_client_errors_and_crashes_leave_the_worker_serving() -> None:
    worker, pipe, metrics = make_worker()
    worker.start()
    wait_ready(worker)

    async def go() -> None:
        pipe.fail_with = InvalidRules("unknown rule label 'X.B9'", param="settings.custom_rules")
        with pytest.raises(InvalidRules):
            await submit(worker, job())
        pipe.fail_with = ValueError("a bug")
        with pytest.raises(ValueError):
            await submit(worker, job())
        await submit(worker, job())

    asyncio.run(go())
    assert count(metrics, EditOutcome.CLIENT_ERROR) == 1
    assert count(metrics, EditOutcome.ERROR) == 1
    assert count(metrics, EditOutcome.OK) == 1
    worker.shutdown()


def test_full_queue_is_refused_with_retry_after_and_frees_up() -> None:
    worker, pipe, metrics = make_worker(max_queue=1)
    worker.start()
    wait_ready(worker)
    pipe.gate = threading.Event()

    async def go() -> None:
        first = asyncio.ensure_future(submit(worker, job("running")))
        second = asyncio.ensure_future(submit(worker, job("waiting")))
        await asyncio.sleep(0)
        await asyncio.to_thread(pipe.started.wait, 5)
        assert worker.queue_depth == 1
        assert metrics.queue_depth._value.get() == 1
        with pytest.raises(QueueFull) as caught:
            worker.admit()
        assert caught.value.status == 429
        assert caught.value.retry_after_s == worker.queue_retry_after_s
        pipe.gate.set()
        assert (await first).job_id == "running"
        assert (await second).job_id == "waiting"
        assert worker.queue_depth == 0
        assert (await submit(worker, job("later"))).job_id == "later"

    asyncio.run(go())
    assert count(metrics, EditOutcome.QUEUE_FULL) == 1
    assert pipe.edits == 3
    worker.shutdown()


def test_cancelling_a_queued_job_leaves_the_queue_and_a_running_one_stops_between_steps() -> None:
    worker, pipe, metrics = make_worker(max_queue=1)
    worker.start()
    wait_ready(worker)
    pipe.gate = threading.Event()

    async def go() -> None:
        running = asyncio.ensure_future(submit(worker, job("running", steps=50)))
        queued = asyncio.ensure_future(submit(worker, job("queued")))
        await asyncio.to_thread(pipe.started.wait, 5)
        await asyncio.sleep(0)
        assert worker.queue_depth == 1
        queued.cancel()
        await asyncio.sleep(0)
        assert worker.queue_depth == 0
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        # The device is busy until the pipeline notices should_stop; then the next job runs.
        pipe.gate.set()
        output = await asyncio.wait_for(submit(worker, job("next")), timeout=5)
        assert output.job_id == "next"

    asyncio.run(go())
    assert pipe.stopped == 1
    assert count(metrics, EditOutcome.CANCELLED) == 2
    assert worker.queue_depth == 0
    worker.shutdown()


def test_readiness_is_loading_then_failed_with_the_reason() -> None:
    release = threading.Event()

    def slow_broken_loader() -> StandInGpuPipeline:
        release.wait(5)
        raise FileNotFoundError("no checkpoint at /models/kontext")

    worker, _, _ = make_worker(loader=slow_broken_loader)
    worker.start()
    assert worker.state is WorkerState.LOADING
    with pytest.raises(ServiceUnavailable) as loading:
        worker.admit()
    assert loading.value.code == "model_loading" and loading.value.retry_after_s
    release.set()
    wait_ready(worker)
    assert worker.state is WorkerState.FAILED
    assert worker.failure is not None and "no checkpoint at /models/kontext" in worker.failure
    with pytest.raises(ServiceUnavailable) as failed:
        worker.admit()
    assert failed.value.code == "model_load_failed"
    worker.shutdown()


def test_out_of_memory_detection() -> None:
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())


def test_warm_up_runs_once_before_the_worker_is_ready() -> None:
    pipe = StandInGpuPipeline()
    seen_states: list[WorkerState] = []
    metrics = EditorMetrics(ServiceMetrics("editor"))
    worker: EditorWorker

    def warm_up(pipeline: StandInGpuPipeline) -> None:  # type: ignore[override]
        seen_states.append(worker.state)
        make_warmup([(32, 32), (48, 32)], 2)(pipeline)

    worker = EditorWorker(lambda: pipe, device="cpu", max_queue=1, metrics=metrics, warmup=warm_up)  # type: ignore[arg-type]
    worker.start()
    wait_ready(worker)
    assert worker.state is WorkerState.READY
    assert seen_states == [WorkerState.LOADING] and pipe.edits == 2
    assert worker.warmup_seconds is not None
    worker.shutdown()


def test_shutdown_stops_a_running_edit_at_its_next_step() -> None:
    worker, pipe, metrics = make_worker()
    worker.start()
    wait_ready(worker)
    pipe.gate = threading.Event()

    async def go() -> None:
        running = asyncio.ensure_future(submit(worker, job("long", steps=50)))
        await asyncio.to_thread(pipe.started.wait, 5)
        worker.shutdown()
        with pytest.raises(ServiceUnavailable) as caught:
            await asyncio.wait_for(running, timeout=5)
        assert caught.value.code == "shutting_down"
        with pytest.raises(ServiceUnavailable):
            worker.admit()

    asyncio.run(go())
    assert pipe.stopped == 1 and count(metrics, EditOutcome.CANCELLED) == 1
