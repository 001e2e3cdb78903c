"""`create_app`: the planner service's FastAPI app (uvicorn `--factory` compatible).

Owns wiring only: shared plumbing from `build_service_app` (error envelope, request ids, metrics,
/healthz /readyz /metrics), the lifespan that builds `PlannerServices` onto `app.state`, readiness from the
backend (model loaded, or upstream `GET /models` answering), the routers and the OpenAPI request bodies.

    uvicorn --factory replan_planner.app:create_app --port 8100      # settings from REPLAN_PLANNER_*
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from replan_common.http.app_factory import build_service_app
from replan_common.http.health import Readiness, ReadyState
from replan_common.metrics import ServiceMetrics
from replan_planner.metrics import PlannerMetrics
from replan_planner.protocol import plan_body_schemas
from replan_planner.routes import plan
from replan_planner.services import PlannerServices, start_services
from replan_planner.settings import PlannerSettings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_STATES = {"ready": ReadyState.READY, "loading": ReadyState.LOADING, "failed": ReadyState.FAILED}


def create_app(
    settings: PlannerSettings | None = None, *, transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """The planner app. `settings` default to the environment; `transport` is the openai backend's (tests)."""
    settings = settings if settings is not None else PlannerSettings()
    service_metrics = ServiceMetrics("planner")
    metrics = PlannerMetrics(service_metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await start_services(settings, metrics=metrics, transport=transport)
        app.state.services = services
        logger.info("planner serving with backend %s, model %s", services.backend.name, services.backend.model)
        try:
            yield
        finally:
            app.state.services = None
            await services.aclose()

    async def readiness() -> Readiness:
        services: PlannerServices | None = getattr(app.state, "services", None)
        if services is None:
            return Readiness(status=ReadyState.LOADING, detail="starting")
        state = await services.backend.state()
        return Readiness(
            status=_STATES.get(state.status, ReadyState.DEGRADED),
            detail=state.detail,
            checks={"backend": services.backend.name, **state.checks},
        )

    app = build_service_app(
        service="planner",
        title="replan planner",
        description="Region plans for image edits from a VLM (RePlan): a global prompt plus boxes with hints.",
        metrics=service_metrics,
        readiness=readiness,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
    )
    app.include_router(plan.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas of the two request bodies of `POST /v1/plan`."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        schema.setdefault("components", {}).setdefault("schemas", {}).update(plan_body_schemas())
    return app.openapi_schema  # type: ignore[return-value]
