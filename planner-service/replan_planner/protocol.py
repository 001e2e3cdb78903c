"""The planner API's wire models.

The plan request and response are shared by every service and live in `replan_common.protocol`; they are
re-exported here so the planner's routes read from one place. Planner-only models: `PlanUpload` (the
multipart form of `POST /v1/plan`, for the OpenAPI document) and `PlannerInfo` (`GET /v1/planner`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from replan_common.protocol import PlanMode, PlanOptions, PlanRequest, PlanResponse, RegionAdjustment, Usage

__all__ = [
    "PlanMode",
    "PlanOptions",
    "PlanRequest",
    "PlanResponse",
    "PlanUpload",
    "PlannerInfo",
    "RegionAdjustment",
    "Usage",
    "plan_body_schemas",
]


class PlanUpload(BaseModel):
    """`POST /v1/plan` as `multipart/form-data`: the same request with the image as a file."""

    image: bytes = Field(description="The image file (PNG, JPEG or WebP).")
    instruction: str = Field(min_length=1, max_length=4000)
    options: str | None = Field(default=None, description='PlanOptions as a JSON string, e.g. {"mode": "rephrase"}.')


class PlannerInfo(BaseModel):
    """What this planner runs, so a gateway can check pixel limits and prompt versions."""

    backend: str
    model: str
    prompt_version: str
    min_pixels: int
    max_pixels: int
    structured_output: str = Field(description="openai: the structured-output mode; transformers: xgrammar|off.")
    grammar: dict[str, Any]
    ready: bool


def plan_body_schemas() -> dict[str, Any]:
    """OpenAPI component schemas of both request bodies of `POST /v1/plan` (JSON and multipart)."""
    schemas: dict[str, Any] = {}
    for model in (PlanRequest, PlanUpload):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


#: `openapi_extra` of `POST /v1/plan`: one route, two content types.
PLAN_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PlanRequest"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/PlanUpload"}},
        },
    }
}
