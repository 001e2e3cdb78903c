"""The gateway's own request and response models; the shared ones come from `replan_common.protocol`.

`/v1/plan` and `/v1/edit` speak the shared `PlanRequest`/`EditRequest` unchanged. Defined here: the
combined `/v1/replan` call, async jobs (`JobCreate` → `JobPublic`, events), the OpenAI-compatible
`/v1/images/edits` (its own models and one `to_core()` translation) and `/v1/info`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from replan_common.errors import BadRequest, ErrorDetail
from replan_common.jobs.models import JobKind, JobRecord, JobSpec, JobStatus
from replan_common.plan import RegionPlan
from replan_common.protocol import (
    Backbone,
    EditResponse,
    EditSettings,
    ImageB64,
    PlanOptions,
    PlanResponse,
)

# ----------------------------------------------------------------------------------------------- replan


class ReplanRequest(BaseModel):
    """Plan then edit, in one call."""

    image: ImageB64 = Field(description="The image: base64 or a data URI (a URL only where allow-listed).")
    instruction: str = Field(min_length=1, max_length=4000)
    plan_options: PlanOptions = Field(default_factory=PlanOptions)
    settings: EditSettings = Field(default_factory=EditSettings)


class ReplanResponse(BaseModel):
    """The planner's answer and the edit made with it."""

    plan: PlanResponse
    image: ImageB64 = Field(description="The edited image, PNG base64, at the input's size.")
    width: int
    height: int
    settings: EditSettings = Field(description="Every edit setting resolved to the value used.")
    timings_ms: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def from_parts(cls, plan: PlanResponse, edit: EditResponse, timings_ms: dict[str, float]) -> ReplanResponse:
        return cls(
            plan=plan.model_copy(update={"plan": edit.plan}),
            image=edit.image,
            width=edit.width,
            height=edit.height,
            settings=edit.settings,
            timings_ms=timings_ms,
        )


# ------------------------------------------------------------------------------------------------- jobs


class JobCreate(BaseModel):
    """`POST /v1/jobs`: a replan (plan then edit) or an edit, run asynchronously."""

    kind: JobKind = JobKind.REPLAN
    image: ImageB64
    instruction: str | None = Field(
        default=None, min_length=1, max_length=4000, description="Required for replan; for edit, the no-plan edit."
    )
    plan: RegionPlan | None = Field(default=None, description="edit only: the plan to apply.")
    plan_text: str | None = Field(default=None, max_length=100_000, description="edit only: raw planner output.")
    plan_options: PlanOptions = Field(default_factory=PlanOptions)
    settings: EditSettings = Field(default_factory=EditSettings)

    @model_validator(mode="after")
    def _valid_spec(self) -> JobCreate:
        self.to_spec()
        return self

    def to_spec(self, image: str | None = None) -> JobSpec:
        """The stored job spec; `image` replaces the client's image field once it has been resolved."""
        return JobSpec(
            kind=self.kind,
            image=image if image is not None else self.image,
            instruction=self.instruction,
            plan=self.plan,
            plan_text=self.plan_text,
            plan_options=self.plan_options,
            settings=self.settings,
        )


class JobResult(BaseModel):
    image: ImageB64 = Field(description="The edited image, PNG base64.")
    width: int
    height: int
    plan: RegionPlan = Field(description="The plan as applied.")
    settings: EditSettings
    timings_ms: dict[str, float] = Field(default_factory=dict)


class JobPublic(BaseModel):
    """A job as clients see it."""

    id: str
    object: Literal["job"] = "job"
    kind: JobKind
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    attempts: int = Field(description="How many times a worker started the job (more than 1: resumed).")
    plan: PlanResponse | None = Field(default=None, description="The planner's answer, once planning is done.")
    result: JobResult | None = None
    error: ErrorDetail | None = None
    events_url: str

    @classmethod
    def from_record(cls, record: JobRecord) -> JobPublic:
        result = None
        if record.result is not None:
            result = JobResult.model_validate(record.result.model_dump())
        return cls(
            id=record.id,
            kind=record.kind,
            status=record.status,
            created_at=record.created_at,
            updated_at=record.updated_at,
            attempts=record.attempts,
            plan=record.plan,
            result=result,
            error=record.error,
            events_url=f"/v1/jobs/{record.id}/events",
        )


# ---------------------------------------------------------------------------------- OpenAI images/edits


class ImagesEditRequest(BaseModel):
    """`POST /v1/images/edits` (OpenAI Images API), multipart fields after reading the upload.

    `prompt` is the edit instruction: the planner plans it, the editor applies the plan. `n` edits share one
    plan and use seeds `seed`, `seed+1`, … . Only `response_format=b64_json` is served (no image hosting).
    """

    image: ImageB64 = Field(description="The uploaded image, base64 (filled from the multipart file).")
    prompt: str = Field(min_length=1, max_length=4000)
    n: int = Field(default=1, ge=1)
    response_format: Literal["b64_json"] | None = "b64_json"
    model: str | None = Field(default=None, description="A backbone (flux-kontext, qwen-image-edit); None: any.")
    size: str | None = Field(default=None, description="Only 'auto': the output has the input's size.")
    seed: int = Field(default=0, ge=0)
    user: str | None = None

    def to_core(self, *, seed_offset: int = 0) -> ReplanRequest:
        """The same edit as our replan request (edit `seed_offset` of `n`)."""
        backbone = None
        if self.model not in (None, "", "replan"):
            try:
                backbone = Backbone(self.model)
            except ValueError as exc:
                known = ", ".join(b.value for b in Backbone)
                raise BadRequest(
                    f"model {self.model!r} is not served here; use one of {known} (or leave it out)",
                    code="model_not_found",
                    param="model",
                ) from exc
        if self.size not in (None, "", "auto"):
            raise BadRequest(
                f"size {self.size!r} is not supported: the edited image keeps the input's size; send 'auto' or omit it",
                code="unsupported_size",
                param="size",
            )
        return ReplanRequest(
            image=self.image,
            instruction=self.prompt,
            settings=EditSettings(backbone=backbone, seed=self.seed + seed_offset),
        )


class ImageData(BaseModel):
    b64_json: str
    revised_prompt: str | None = Field(default=None, description="The plan's global prompt.")


class ImagesResponse(BaseModel):
    created: int = Field(default_factory=lambda: int(time.time()))
    data: list[ImageData]


# ------------------------------------------------------------------------------------------------- info


class PoolWorker(BaseModel):
    url: str
    health: str
    available: bool
    outstanding: int


class Limits(BaseModel):
    max_body_bytes: int
    max_image_bytes: int
    max_image_pixels: int
    max_images_per_request: int
    rate_limit_requests: int | None = Field(description="Per key and window; None: no limit.")
    rate_limit_window_s: int
    image_urls_fetched_from: list[str] = Field(description="Allow-listed hosts; empty: URLs are refused.")


class GatewayInfo(BaseModel):
    """`GET /v1/info`: what the stack serves and its limits."""

    service: str = "gateway"
    version: str
    auth_required: bool
    backbones: list[Backbone] = Field(description="Backbones of the editors that answered.")
    editors: list[dict[str, object]] = Field(description="Each ready editor's own /v1/info.")
    pools: dict[str, list[PoolWorker]]
    limits: Limits
    jobs_executor: str
