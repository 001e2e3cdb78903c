"""What the editor's routes call: decode a request, queue it on the worker, encode the answer.

`EditService` is the LitServe-style middle of the service: `prepare` (decode the image, read the plan,
check its boxes against the image, resolve settings; all before the job takes a queue slot, so bad input
never waits for the device), then the worker's `run`, then `to_response` / `to_png` / `events` (SSE).
It also answers the original reward route and `/v1/info`. It knows HTTP only as far as media types and
SSE frames; routes stay thin.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from replan_common import __version__
from replan_common.context import get_request_id
from replan_common.errors import ReplanError, ServiceUnavailable
from replan_common.geometry import Size
from replan_common.images import ImageLimits, decode_image_b64, encode_png, encode_png_b64
from replan_common.jobs.sse import format_sse, sse_comment
from replan_common.plan import RegionPlan
from replan_common.plan_parser import parse_planner_output, validate_plan_boxes
from replan_common.protocol import (
    Backbone,
    EditRequest,
    EditResponse,
    EditSettings,
    GeneratedImage,
    ImagesGenerationsRequest,
    ImagesGenerationsResponse,
    ProgressEvent,
    ProgressStage,
)
from replan_editor.progress import ProgressSink
from replan_editor.protocol import EditorInfo, EditStreamEvent
from replan_editor.settings import EditorSettings
from replan_editor.worker import EditJob, EditorWorker, EditOutput, Ticket, WorkerState

logger = logging.getLogger(__name__)


class EditService:
    """Decode → queue → run → encode, for `/v1/edit`, `/v1/images/generations` and `/v1/info`."""

    def __init__(
        self,
        worker: EditorWorker,
        *,
        settings: EditorSettings,
        publisher: ProgressSink | None = None,
        kernels: Callable[[], list[str]] = list,
    ) -> None:
        self.worker = worker
        self.settings = settings
        self.limits: ImageLimits = settings.images.to_limits()
        self.publisher = publisher
        self._kernels = kernels

    # ------------------------------------------------------------------------------------- decode

    async def prepare(
        self, request: EditRequest, *, job_id: str, image_param: str = "image", plan_param: str = "plan_text"
    ) -> EditJob:
        """Decode and validate everything the device will need; raises the 4xx errors."""
        pipeline = self.worker.pipeline  # 503 while loading, before any work
        started = time.perf_counter()
        image = await asyncio.to_thread(decode_image_b64, request.image, limits=self.limits, param=image_param)
        decoded = time.perf_counter()
        plan = self._read_plan(request, plan_param)
        plan = validate_plan_boxes(plan, Size(image.width, image.height))
        settings = pipeline.resolve_settings(request.settings)  # 400 backbone_mismatch
        if settings.custom_rules:
            check_rules(settings, plan, pipeline.backbone)
        timings = {"decode_ms": (decoded - started) * 1000, "prepare_ms": (time.perf_counter() - started) * 1000}
        return EditJob(job_id=job_id, image=image, plan=plan, settings=settings, timings_ms=timings)

    @staticmethod
    def _read_plan(request: EditRequest, plan_param: str) -> RegionPlan:
        if request.plan is not None:
            return request.plan
        if request.plan_text is not None:
            try:
                return parse_planner_output(request.plan_text)
            except ReplanError as exc:
                exc.param = f"{plan_param}.{exc.param}" if exc.param else plan_param
                raise
        assert request.instruction is not None  # EditRequest guarantees exactly one source
        return RegionPlan(global_prompt=request.instruction)

    # ---------------------------------------------------------------------------------------- run

    async def edit(self, job: EditJob) -> EditOutput:
        """Queue and run one edit; `QueueFull` is raised before the first await."""
        ticket = self.worker.admit()
        self.publish_progress(ProgressEvent(job_id=job.job_id, stage=ProgressStage.QUEUED, total=job.settings.steps))
        return await self.worker.run(ticket, job, on_event=self.publish_progress)

    def publish_progress(self, event: ProgressEvent) -> None:
        if self.publisher is not None:
            self.publisher.publish(event)

    def open_stream(self, job: EditJob) -> EditStream:
        """Admit `job` now (so a full queue is an HTTP 429, not a stream event) and return its stream."""
        return EditStream(self, job, self.worker.admit())

    # ------------------------------------------------------------------------------------- encode

    async def to_response(self, output: EditOutput) -> EditResponse:
        started = time.perf_counter()
        image_b64 = await asyncio.to_thread(encode_png_b64, output.image)
        timings = {**output.timings_ms, "png_encode_ms": (time.perf_counter() - started) * 1000}
        return EditResponse(
            image=image_b64,
            width=output.image.width,
            height=output.image.height,
            plan=output.plan,
            settings=output.settings,
            timings_ms=timings,
        )

    async def to_png(self, output: EditOutput) -> tuple[bytes, dict[str, float]]:
        started = time.perf_counter()
        png = await asyncio.to_thread(encode_png, output.image)
        return png, {**output.timings_ms, "png_encode_ms": (time.perf_counter() - started) * 1000}

    # --------------------------------------------------------------------------- other endpoints

    async def generations(self, body: ImagesGenerationsRequest, *, job_id: str) -> ImagesGenerationsResponse:
        """The original reward server's edit: its payload in, `{"data":[{"final_image_base64"}]}` out."""
        job = await self.prepare(body.to_core(), job_id=job_id, image_param="image_base64", plan_param="response")
        output = await self.edit(job)
        png_b64 = await asyncio.to_thread(encode_png_b64, output.image)
        return ImagesGenerationsResponse(data=[GeneratedImage(final_image_base64=png_b64)])

    def info(self) -> EditorInfo:
        worker = self.worker
        defaults: EditSettings | None = None
        kernels: list[str] = []
        if worker.state is WorkerState.READY:  # both need the loaded pipeline (and torch)
            defaults = worker.pipeline.resolve_settings(EditSettings())
            kernels = self._kernels()
        return EditorInfo(
            version=__version__,
            status=worker.state.value,
            failure=worker.failure,
            backbone=self.settings.backbone,
            model=self.settings.resolved_model,
            preset=self.settings.preset.value,
            device=self.settings.resolved_device,
            dtype=self.settings.resolved_dtype.value,
            compile=self.settings.compile,
            kernels=kernels,
            defaults=defaults,
            max_queue=worker.max_queue,
            queue_depth=worker.queue_depth,
            load_seconds=worker.load_seconds,
            warmup_seconds=worker.warmup_seconds,
        )


class EditStream:
    """One admitted edit streamed as SSE: `progress`… then `result` or `error` (see `EditStreamEvent`)."""

    def __init__(self, service: EditService, job: EditJob, ticket: Ticket) -> None:
        self._service = service
        self._job = job
        self._ticket = ticket
        self._task: asyncio.Task[EditOutput] | None = None

    async def events(self) -> AsyncIterator[bytes]:
        job, service = self._job, self._service
        queue: asyncio.Queue[ProgressEvent | None] = asyncio.Queue()
        event_id = 0

        def on_event(event: ProgressEvent) -> None:
            service.publish_progress(event)
            queue.put_nowait(event)

        on_event(ProgressEvent(job_id=job.job_id, stage=ProgressStage.QUEUED, total=job.settings.steps))
        self._task = asyncio.ensure_future(service.worker.run(self._ticket, job, on_event=on_event))
        self._task.add_done_callback(lambda _task: queue.put_nowait(None))
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), timeout=service.settings.sse_keepalive_s)
            except asyncio.TimeoutError:
                yield sse_comment("keep-alive").encode()
                continue
            if event is None:
                break
            event_id += 1
            yield _frame(EditStreamEvent.PROGRESS, event.model_dump_json(exclude_none=True), event_id)
        event_id += 1
        yield await self._final_frame(event_id)

    async def _final_frame(self, event_id: int) -> bytes:
        assert self._task is not None
        if self._task.cancelled():  # the server is shutting down under us
            exc: BaseException | None = ServiceUnavailable("the edit was cancelled: the editor is shutting down")
        else:
            exc = self._task.exception()
        if exc is None:
            response = await self._service.to_response(self._task.result())
            return _frame(EditStreamEvent.RESULT, response.model_dump_json(), event_id)
        if not isinstance(exc, ReplanError):
            logger.error("edit %s failed", self._job.job_id, exc_info=exc)
            exc = ReplanError("internal error; the request id identifies it in the logs")
        body = {**exc.to_envelope(get_request_id()), "status": exc.status}
        if exc.retry_after_s is not None:
            body["retry_after_s"] = exc.retry_after_s
        return _frame(EditStreamEvent.ERROR, json.dumps(body), event_id)

    def close(self) -> None:
        """However the response ended: stop the job if it still runs; free the slot if it never ran."""
        task = self._task
        if task is None or task.done():
            self._ticket.release_unclaimed()
            return
        task.cancel()
        # A task cancelled before its first step never claimed the ticket; the worker releases claimed ones.
        task.add_done_callback(lambda _task: self._ticket.release_unclaimed())


def check_rules(settings: EditSettings, plan: RegionPlan, backbone: Backbone) -> None:
    """Raise `InvalidRules` for bad custom rule labels now, before the edit takes a place in the queue."""
    from replan_editor.pipelines.rule_setup import rule_schedule

    rule_schedule(settings, len(plan.regions), has_image_prompt=backbone is Backbone.QWEN_IMAGE_EDIT)


def _frame(event: EditStreamEvent, data: str, event_id: int) -> bytes:
    return format_sse(data, event=event.value, id=str(event_id)).encode()


__all__ = ["EditService", "EditStream"]
