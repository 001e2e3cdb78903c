"""Request and response models shared by every service (the wire contract).

The planner's `/v1/plan`, the editor's `/v1/edit` and the gateway's public routes speak these models;
services import them rather than redefining them. Compatibility routes (OpenAI images, the original
RePlan reward route) have their own models with a `to_core()` translation into these.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from replan_common.geometry import ExpandMode
from replan_common.plan import RegionPlan

#: Base64 (optionally a `data:image/...;base64,` URI) of a PNG, JPEG or WebP image.
ImageB64 = str


class Backbone(str, Enum):
    """Which diffusion editor runs the edit."""

    FLUX_KONTEXT = "flux-kontext"
    QWEN_IMAGE_EDIT = "qwen-image-edit"


class HintTokens(str, Enum):
    """How hint prompts are encoded: padded to 512 tokens (as the original) or trimmed to real length."""

    PADDED = "padded"
    TRIMMED = "trimmed"


class AttentionKernel(str, Enum):
    """Which region-attention kernel runs; all compute the same function. `auto` picks by device and shape."""

    AUTO = "auto"
    DENSE = "dense"
    FLEX = "flex"
    FAST = "fast"


class PlanMode(str, Enum):
    """`regions`: a full region plan. `rephrase`: a global prompt only (the Kontext-with-rephrase baseline)."""

    REGIONS = "regions"
    REPHRASE = "rephrase"


# --------------------------------------------------------------------------------------------- planner


class PlanOptions(BaseModel):
    mode: PlanMode = PlanMode.REGIONS
    max_new_tokens: int = Field(default=2048, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0, description="None: the model's default.")
    seed: int | None = None


class PlanRequest(BaseModel):
    image: ImageB64 = Field(description="The image to edit: base64 or a data URI.")
    instruction: str = Field(min_length=1, max_length=4000, description="The user's edit instruction.")
    options: PlanOptions = Field(default_factory=PlanOptions)


class RegionAdjustment(BaseModel):
    """What the planner service did to a region the model proposed, and why."""

    index: int = Field(description="Index of the region in the model's output.")
    action: Literal["clipped", "dropped"]
    reason: str


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class PlanResponse(BaseModel):
    plan: RegionPlan = Field(description="The plan, boxes in original-image pixels.")
    raw_text: str = Field(description="The model's output, verbatim.")
    model: str
    adjustments: list[RegionAdjustment] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    usage: Usage | None = None


# ---------------------------------------------------------------------------------------------- editor


class EditSettings(BaseModel):
    """Knobs of one edit. `None` means the backbone's default (facts: Kontext 28 steps, guidance 2.5; Qwen 50
    steps, true CFG 4.0, negative prompt " ")."""

    model_config = ConfigDict(extra="forbid")

    backbone: Backbone | None = Field(default=None, description="None: the worker's loaded backbone.")
    steps: int | None = Field(default=None, ge=1, le=200)
    guidance_scale: float | None = Field(default=None, ge=0.0, le=30.0, description="Kontext distilled guidance.")
    true_cfg_scale: float | None = Field(default=None, ge=1.0, le=30.0, description="Qwen true CFG scale.")
    negative_prompt: str | None = Field(default=None, max_length=2000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    expand_value: float | None = Field(default=None, ge=0.0, le=4096.0)
    expand_mode: ExpandMode = ExpandMode.RATIO
    rule_switch_ratio: float | None = Field(
        default=None,
        ge=0.0,
        description="Custom rules for steps [0, int(ratio*steps)); >1 is an absolute step.",
    )
    custom_rules: dict[str, bool] | None = Field(
        default=None,
        description='Query→key matrix cells by label, keys "Query, Key" or "Query|Key" '
        '(e.g. "N.BG|N.B1": false). None: the locality rule.',
    )
    bboxes_attend_to_each_other: bool = True
    symmetric_masking: bool = False
    hint_tokens: HintTokens = HintTokens.TRIMMED
    kernel: AttentionKernel = AttentionKernel.AUTO
    delete_main_prompt: bool = False
    replace_global_prompt: str | None = Field(
        default=None, max_length=2000, description="Use this text instead of the plan's global prompt."
    )
    max_area: int | None = Field(
        default=None, ge=64 * 64, le=2048 * 2048, description="Working-resolution pixel budget; None: 1024²."
    )


class EditRequest(BaseModel):
    """One edit. Give exactly one of `plan`, `plan_text` (raw planner output) or `instruction` (no regions)."""

    image: ImageB64
    plan: RegionPlan | None = None
    plan_text: str | None = Field(default=None, max_length=100_000)
    instruction: str | None = Field(default=None, min_length=1, max_length=4000)
    settings: EditSettings = Field(default_factory=EditSettings)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> EditRequest:
        given = [n for n in ("plan", "plan_text", "instruction") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of 'plan', 'plan_text' or 'instruction' "
                f"(got {', '.join(given) if given else 'none'})"
            )
        return self


class EditResponse(BaseModel):
    image: ImageB64 = Field(description="The edited image, PNG base64, at the input's size.")
    width: int
    height: int
    plan: RegionPlan = Field(description="The plan as applied (boxes in original-image pixels).")
    settings: EditSettings = Field(description="Every setting resolved to the value used.")
    timings_ms: dict[str, float] = Field(default_factory=dict)


# --------------------------------------------------------------------------------------------- progress


class ProgressStage(str, Enum):
    QUEUED = "queued"
    PLANNING = "planning"
    EDITING = "editing"
    STEP = "step"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"


class ProgressEvent(BaseModel):
    """One progress event of a job or edit, as streamed over SSE and Redis pub/sub."""

    job_id: str
    stage: ProgressStage
    step: int | None = None
    total: int | None = None
    message: str | None = None
    error_code: str | None = None


# ------------------------------------------------------------------- the original's reward editing route


class ImagesGenerationsRequest(BaseModel):
    """The original RePlan reward server's `POST /v1/images/generations` body, accepted unchanged."""

    image_base64: str
    instruction: str = ""
    response: str = Field(description="Raw planner output; parsed by the server.")
    delete_main_prompt: bool = False
    replace_global_prompt: bool = False
    custom_global_prompt_text: str = "keep remaining parts of this image unchanged"
    expand_value: float = Field(default=0.15, ge=0.0)
    expand_mode: ExpandMode = ExpandMode.RATIO
    bboxes_attend_to_each_other: bool = True
    attention_rules: dict[str, bool] | None = None

    def to_core(self) -> EditRequest:
        """The same edit in our terms: Kontext defaults, default rules throughout (switch ratio 0)."""
        return EditRequest(
            image=self.image_base64,
            plan_text=self.response,
            settings=EditSettings(
                expand_value=self.expand_value,
                expand_mode=self.expand_mode,
                bboxes_attend_to_each_other=self.bboxes_attend_to_each_other,
                custom_rules=self.attention_rules,
                rule_switch_ratio=1.0 if self.attention_rules else 0.0,
                delete_main_prompt=self.delete_main_prompt,
                replace_global_prompt=self.custom_global_prompt_text if self.replace_global_prompt else None,
            ),
        )


class GeneratedImage(BaseModel):
    final_image_base64: str


class ImagesGenerationsResponse(BaseModel):
    data: list[GeneratedImage]
