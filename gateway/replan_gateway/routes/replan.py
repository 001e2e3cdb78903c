"""`POST /v1/plan`, `/v1/edit` and `/v1/replan`: synchronous planning and editing through the pools."""

from __future__ import annotations

from fastapi import APIRouter

from replan_common.errors import ErrorEnvelope
from replan_common.protocol import EditRequest, EditResponse, PlanRequest, PlanResponse
from replan_gateway.deps import ReplanServiceDep, WorkCallerDep
from replan_gateway.protocol import ReplanRequest, ReplanResponse

router = APIRouter(prefix="/v1", tags=["replan"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 413, 422, 429, 502, 503, 504)
}


@router.post("/plan", response_model=PlanResponse, responses=ERRORS, summary="Plan an edit: regions and hints")
async def plan(body: PlanRequest, service: ReplanServiceDep, _: WorkCallerDep) -> PlanResponse:
    return await service.plan(body)


@router.post(
    "/edit",
    response_model=EditResponse,
    responses=ERRORS,
    summary="Edit with a plan, raw planner text, or an instruction alone",
)
async def edit(body: EditRequest, service: ReplanServiceDep, _: WorkCallerDep) -> EditResponse:
    return await service.edit(body)


@router.post(
    "/replan", response_model=ReplanResponse, responses=ERRORS, summary="Plan, then edit with the plan, in one call"
)
async def replan(body: ReplanRequest, service: ReplanServiceDep, _: WorkCallerDep) -> ReplanResponse:
    return await service.replan(body)
