"""Compatibility routes: OpenAI's `POST /v1/images/edits` and the original RePlan reward route
`POST /v1/images/generations`, each with its own models (`protocol`, `replan_common.protocol`) and one
translation into ours, so existing clients and training code point at the gateway unchanged."""

from __future__ import annotations

from fastapi import APIRouter

from replan_common.errors import ErrorEnvelope
from replan_common.protocol import ImagesGenerationsRequest, ImagesGenerationsResponse
from replan_gateway.deps import ImagesEditFormDep, ReplanServiceDep, WorkCallerDep
from replan_gateway.protocol import ImagesResponse

router = APIRouter(prefix="/v1/images", tags=["compatibility"])

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorEnvelope} for status in (400, 401, 413, 422, 429, 502, 503, 504)
}


@router.post(
    "/edits",
    response_model=ImagesResponse,
    responses=ERRORS,
    summary="OpenAI Images API edit (multipart: image, prompt, n, response_format=b64_json)",
    description="The prompt is planned into regions, then edited; `n` edits share one plan with consecutive "
    "seeds. `revised_prompt` is the plan's global prompt. Masks, URLs and output sizes are not supported.",
)
async def images_edits(form: ImagesEditFormDep, service: ReplanServiceDep, _: WorkCallerDep) -> ImagesResponse:
    return await service.images_edit(form)


@router.post(
    "/generations",
    response_model=ImagesGenerationsResponse,
    responses=ERRORS,
    summary="The original RePlan reward server's edit route (image_base64, instruction, response)",
)
async def images_generations(
    body: ImagesGenerationsRequest, service: ReplanServiceDep, _: WorkCallerDep
) -> ImagesGenerationsResponse:
    return await service.generations(body)
