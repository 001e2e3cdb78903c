"""`POST /v1/rewards`: GRPO rewards for a batch of planner rollouts (stage 1 at once, stage 2 via the queue).

The logic is `replan_eval.rewards.service.RewardService`; this module only routes to it. `install_rewards`
builds the service once when the app is created (broker and reward store from ``REPLAN_WORKER_*``, the
same variables the reward workers read, so a bad value fails at start-up) and mounts the router.
Authentication and the per-key rate limit are the other work routes' (`WorkCallerDep`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request

from replan_common.errors import ErrorEnvelope
from replan_eval.rewards.protocol import RewardsRequest, RewardsResponse
from replan_eval.rewards.service import RewardService
from replan_gateway.deps import WorkCallerDep

__all__ = ["install_rewards", "router"]

router = APIRouter(prefix="/v1", tags=["rewards"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 413, 422, 429, 503)
}


def install_rewards(app: FastAPI, service: RewardService | None = None) -> None:
    """Mount ``/v1/rewards`` on ``app`` with ``service`` (default: built from ``REPLAN_WORKER_*`` now)."""
    if service is None:
        from replan_eval.settings import get_settings

        service = RewardService.from_settings(get_settings())
    app.state.reward_service = service
    app.include_router(router)


def get_reward_service(request: Request) -> RewardService:
    service: RewardService = request.app.state.reward_service
    return service


RewardServiceDep = Annotated[RewardService, Depends(get_reward_service)]


@router.post(
    "/rewards",
    response_model=RewardsResponse,
    responses=ERRORS,
    summary="Score a batch of planner rollouts (GRPO rewards); scores come back in input order",
    description="Stage 1 (format, quality, region) is computed at once on the gateway. Stage 2 (gate, edit, "
    "three judge calls, binarise at 4, (T + E + C·E)/3 + 0.2·stage1) runs on the reward queue; samples "
    "still unscored when the wait ends score 0 and are listed in `missing`.",
)
async def rewards(body: RewardsRequest, service: RewardServiceDep, _: WorkCallerDep) -> RewardsResponse:
    return await service.score(body)
