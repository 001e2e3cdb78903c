"""`create_app`: the editor worker's FastAPI app (one process per device; `uvicorn --factory` entry point).

Builds the settings (from the environment when not given), the metrics, the `EditorWorker` (whose model
loads in the background when the app starts) and the `EditService`, puts them on `app.state.services`,
and mounts the routes on the shared service skeleton (error envelope, request ids, `/healthz`, `/readyz`,
`/metrics`). Nothing happens at import.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI, Request, Response

from replan_common.http.app_factory import build_service_app
from replan_common.http.health import Readiness, ReadyState
from replan_common.log import configure_logging
from replan_common.metrics import ServiceMetrics
from replan_editor.deps import EditorServices
from replan_editor.loading import available_kernels, load_pipeline
from replan_editor.metrics import EditorMetrics
from replan_editor.progress import ProgressSink, RedisProgressPublisher
from replan_editor.routes import api_router
from replan_editor.serving import EditService
from replan_editor.settings import EditorSettings
from replan_editor.sse import CLIENT_CLOSED_REQUEST, ClientDisconnected
from replan_editor.worker import EditorWorker, WorkerState, make_warmup

_READY_STATES = {
    WorkerState.LOADING: ReadyState.LOADING,
    WorkerState.READY: ReadyState.READY,
    WorkerState.FAILED: ReadyState.FAILED,
    WorkerState.STOPPED: ReadyState.FAILED,
}


def create_app(settings: EditorSettings | None = None) -> FastAPI:
    """The editor app. Without `settings` (the `uvicorn --factory` case) they come from the environment and
    logging is configured here; the CLI passes settings and configures logging itself."""
    if settings is None:
        settings = EditorSettings()
        configure_logging(settings.log_level, json_lines=settings.log_json)
    metrics = ServiceMetrics("editor")
    editor_metrics = EditorMetrics(metrics)
    worker = build_worker(settings, editor_metrics)
    publisher: ProgressSink | None = None
    if settings.redis_url is not None:
        publisher = RedisProgressPublisher(settings.redis_url.get_secret_value())
    edits = EditService(
        worker, settings=settings, publisher=publisher, kernels=partial(available_kernels, settings.resolved_device)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.start()
        try:
            yield
        finally:
            worker.shutdown()
            if publisher is not None:
                await publisher.aclose()

    async def readiness() -> Readiness:
        state = worker.state
        detail = worker.failure if state is WorkerState.FAILED else None
        checks = {"model": state.value, "device": settings.resolved_device}
        return Readiness(status=_READY_STATES[state], detail=detail, checks=checks)

    app = build_service_app(
        service="editor",
        title="replan editor",
        description="Region-guided image editing on one device (FLUX.1 Kontext or Qwen-Image-Edit).",
        metrics=metrics,
        readiness=readiness,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
    )
    app.state.services = EditorServices(
        settings=settings, worker=worker, edits=edits, metrics=metrics, editor_metrics=editor_metrics
    )
    app.include_router(api_router)
    app.add_exception_handler(ClientDisconnected, _on_client_disconnected)
    return app


def build_worker(settings: EditorSettings, metrics: EditorMetrics) -> EditorWorker:
    """The worker for `settings`: the pipeline loader, the warm-up edit (when enabled) and the queue."""
    warmup = make_warmup(settings.resolved_warmup_sizes, settings.warmup_steps) if settings.warmup_enabled else None
    return EditorWorker(
        partial(load_pipeline, settings),
        device=settings.resolved_device,
        max_queue=settings.max_queue,
        metrics=metrics,
        warmup=warmup,
        queue_retry_after_s=settings.queue_retry_after_s,
        oom_retry_after_s=settings.oom_retry_after_s,
        loading_retry_after_s=settings.loading_retry_after_s,
    )


async def _on_client_disconnected(_: Request, __: Exception) -> Response:
    # Nobody reads this; the status shows in the access log and the request metrics.
    return Response(status_code=CLIENT_CLOSED_REQUEST)
