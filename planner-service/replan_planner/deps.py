"""FastAPI dependencies of the planner routes: the services built by the lifespan, and the request body.

`ServicesDep` / `PlannerDep` read the `PlannerServices` that `app.lifespan` put on `app.state`.
`PlanInputDep` reads `POST /v1/plan` from either content type (JSON `PlanRequest`, or multipart with the
image as a file) into one `PlanInput`, so the route does not care which one the client sent.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from replan_common.errors import BadRequest, ServiceUnavailable
from replan_planner.planner import PlanInput, Planner
from replan_planner.protocol import PlanRequest
from replan_planner.services import PlannerServices

__all__ = ["PlanInputDep", "PlannerDep", "ServicesDep"]


def get_services(request: Request) -> PlannerServices:
    services = getattr(request.app.state, "services", None)
    if services is None:
        raise ServiceUnavailable("the planner is starting; retry shortly", code="planner_starting", retry_after_s=2)
    return services  # type: ignore[no-any-return]


ServicesDep = Annotated[PlannerServices, Depends(get_services)]


def get_planner(services: ServicesDep) -> Planner:
    return services.planner


PlannerDep = Annotated[Planner, Depends(get_planner)]


async def read_plan_input(request: Request) -> PlanInput:
    """The plan request from a JSON body or a multipart form; 415 for any other content type."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _from_form(request)
    if content_type in ("", "application/json") or content_type.endswith("+json"):
        return await _from_json(request)
    raise HTTPException(
        415, f"content type {content_type!r} is not accepted; send application/json or multipart/form-data"
    )


PlanInputDep = Annotated[PlanInput, Depends(read_plan_input)]


async def _from_json(request: Request) -> PlanInput:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"the body is not valid JSON ({exc})", "input": None}]
        ) from exc
    parsed = _validated(body)
    return PlanInput(image=parsed.image, instruction=parsed.instruction, options=parsed.options)


async def _from_form(request: Request) -> PlanInput:
    form = await request.form()
    image = form.get("image")
    if image is None:
        raise BadRequest(
            "no image: send the image as the multipart file field 'image'", code="missing_image", param="image"
        )
    options: Any = form.get("options")
    if isinstance(options, str) and options.strip():
        try:
            options = json.loads(options)
        except ValueError as exc:
            raise BadRequest(f"options is not valid JSON ({exc})", code="invalid_options", param="options") from exc
    elif options is not None and not isinstance(options, str):
        raise BadRequest("options must be a JSON text field, not a file", code="invalid_options", param="options")
    else:
        options = {}
    instruction = form.get("instruction")
    if not isinstance(instruction, str):
        raise BadRequest(
            "no instruction: send the text field 'instruction'", code="missing_instruction", param="instruction"
        )
    # Same validation as the JSON body (instruction length, options); the image is checked when decoded.
    parsed = _validated({"image": "-", "instruction": instruction, "options": options})
    data = await image.read() if isinstance(image, UploadFile) else image
    return PlanInput(image=data, instruction=parsed.instruction, options=parsed.options)


def _validated(body: Any) -> PlanRequest:
    try:
        return PlanRequest.model_validate(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc
