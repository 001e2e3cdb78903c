"""`GET /v1/info`: what the stack serves and its limits. (`/healthz`, `/readyz`, `/metrics` come from the shared
service skeleton; the gateway's readiness probe is built in `app`.)"""

from __future__ import annotations

from fastapi import APIRouter

from replan_gateway.deps import CallerDep, ServicesDep
from replan_gateway.protocol import GatewayInfo

router = APIRouter(prefix="/v1", tags=["info"])


@router.get("/info", response_model=GatewayInfo, summary="Backbones, workers and limits")
async def info(services: ServicesDep, _: CallerDep) -> GatewayInfo:
    return await services.replan.info(jobs_executor=services.jobs.queue.name)
