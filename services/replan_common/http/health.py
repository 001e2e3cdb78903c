"""`/healthz`, `/readyz` and `/metrics`, the same on every service.

`/healthz` answers while the process serves HTTP at all. `/readyz` asks the service's own readiness probe
(model loaded, upstream reachable) and answers 503 until it says ready, so load balancers and Kubernetes
send no traffic to a worker still loading its model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from replan_common.metrics import ServiceMetrics


class ReadyState(str, Enum):
    READY = "ready"
    LOADING = "loading"
    FAILED = "failed"
    DEGRADED = "degraded"


class Readiness(BaseModel):
    status: ReadyState
    detail: str | None = None
    checks: dict[str, str] = {}


class Liveness(BaseModel):
    status: str = "ok"
    service: str


ReadinessProbe = Callable[[], Awaitable[Readiness]]


def health_router(service: str, metrics: ServiceMetrics, readiness: ReadinessProbe) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Liveness, summary="The process is alive")
    async def healthz() -> Liveness:
        return Liveness(service=service)

    @router.get(
        "/readyz",
        response_model=Readiness,
        summary="Ready to serve (model loaded, upstreams reachable); 503 otherwise",
        responses={503: {"model": Readiness}},
    )
    async def readyz() -> JSONResponse:
        state = await readiness()
        return JSONResponse(state.model_dump(mode="json"), status_code=200 if state.status is ReadyState.READY else 503)

    @router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics_route() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return router
