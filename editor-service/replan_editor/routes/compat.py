"""`POST /v1/images/generations`: the original RePlan reward server's route, so GRPO training code can
point at us unchanged. Its payload and answer are accepted and given exactly; errors use our envelope
(4xx for bad input, 429/503 with Retry-After, which the original client retries as it does any 5xx)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from replan_common.errors import ErrorEnvelope
from replan_common.protocol import ImagesGenerationsRequest, ImagesGenerationsResponse
from replan_editor.deps import EditServiceDep, JobIdDep
from replan_editor.sse import run_until_disconnected

router = APIRouter(prefix="/v1", tags=["compatibility"])


@router.post(
    "/images/generations",
    response_model=ImagesGenerationsResponse,
    summary="RePlan reward editing route: image_base64 + raw planner response → final_image_base64",
    responses={status: {"model": ErrorEnvelope} for status in (400, 413, 422, 429, 500, 503)},
)
async def images_generations(
    body: ImagesGenerationsRequest, request: Request, service: EditServiceDep, job_id: JobIdDep
) -> ImagesGenerationsResponse:
    return await run_until_disconnected(request.receive, lambda: service.generations(body, job_id=job_id))
