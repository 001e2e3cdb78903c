"""`POST /v1/plan`: image + instruction → region plan (JSON or multipart), and `GET /v1/planner`."""

from __future__ import annotations

from fastapi import APIRouter

from replan_common.errors import ErrorEnvelope
from replan_planner.deps import PlanInputDep, PlannerDep, ServicesDep
from replan_planner.protocol import PLAN_REQUEST_BODY, PlannerInfo, PlanResponse

router = APIRouter(prefix="/v1", tags=["plan"])

_ERRORS = {status: {"model": ErrorEnvelope} for status in (400, 413, 415, 422, 502, 503, 504)}


@router.post(
    "/plan",
    response_model=PlanResponse,
    summary="Plan an edit: global prompt plus regions (boxes in original-image pixels)",
    openapi_extra=PLAN_REQUEST_BODY,
    responses=_ERRORS,  # type: ignore[arg-type]
)
async def create_plan(body: PlanInputDep, planner: PlannerDep) -> PlanResponse:
    return await planner.plan(body)


@router.get("/planner", response_model=PlannerInfo, summary="What this planner runs (backend, model, pixel limits)")
async def planner_info(services: ServicesDep) -> PlannerInfo:
    settings, state = services.settings, await services.backend.state()
    return PlannerInfo(
        backend=services.backend.name,
        model=services.backend.model,
        prompt_version=settings.prompt_version,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
        structured_output=settings.structured_output_name,
        grammar=settings.grammar.model_dump(),
        ready=state.ready,
    )
