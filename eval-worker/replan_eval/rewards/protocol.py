"""The wire models of ``POST /v1/rewards``: a batch of rollouts in, one score per rollout out, in order.

Shared by the gateway route (which validates requests with them) and the trainer adapters (which build
requests and read replies with them), so both sides agree on one definition. `RewardSample` is the
public form of a rollout; `RewardSample.to_core` turns it into the worker's `RewardInput`. Stage 1
needs only the response; stage 2 also needs the input image and ``extra_info.instruction_details``
(a sample without the details scores 0 as in the original, but a missing image is a request error,
because no trainer means to send one).
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from replan_eval.rewards.stage1 import Stage1Score
from replan_eval.rewards.stage2 import RewardInput, Stage2Score
from replan_eval.rewards.store import RewardResult, RewardStage

__all__ = [
    "MAX_RESPONSE_CHARS",
    "RewardSample",
    "RewardSampleResult",
    "RewardStatus",
    "RewardsRequest",
    "RewardsResponse",
]

#: Longer than any planner response a trainer would send (2048 tokens are ~10k characters).
MAX_RESPONSE_CHARS = 200_000


class RewardStatus(str, Enum):
    """How a sample's score came about; everything but ``scored`` means planning counted 0.

    A superset of `Stage2Status` (a test keeps them in step) plus ``timed_out``.
    """

    SCORED = "scored"
    GATED = "gated"
    MISSING_FIELDS = "missing_fields"
    EDIT_FAILED = "edit_failed"
    TIMED_OUT = "timed_out"


class RewardSample(BaseModel):
    """One rollout: the planner's raw response, and for stage 2 the input image and instruction details."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    response: str = Field(max_length=MAX_RESPONSE_CHARS, description="The planner's raw output.")
    image: str | None = Field(
        default=None,
        validation_alias=AliasChoices("image", "input_image_base64", "image_base64"),
        description="The input image, base64 or a data URI; required for stage 2.",
    )
    extra_info: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Stage 2 reads extra_info.instruction_details.{editing_instruction, referring_expression}.",
    )

    @field_validator("image", mode="before")
    @classmethod
    def _first_of_list(cls, value: object) -> object:
        # verl/EasyR1 batches carry a rollout's image as a one-element list.
        if isinstance(value, list):
            return value[0] if value else None
        return value

    def to_core(self) -> RewardInput:
        """The worker's input (stage 2 only; the request validator guarantees the image)."""
        assert self.image is not None, "RewardsRequest requires an image for stage 2"
        return RewardInput(response=self.response, image=self.image, extra_info=self.extra_info)


class RewardsRequest(BaseModel):
    """A batch to score. Stage 1 is computed on the gateway's CPU at once; stage 2 goes to the reward queue."""

    model_config = ConfigDict(extra="forbid")

    stage: RewardStage = Field(default=1, description="1: format and reasoning; 2: planning (edit + judge).")
    samples: list[RewardSample] = Field(min_length=1, description="Scores come back in this order.")
    timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Stage 2: how long to wait for the batch (at most the server's limit); unscored samples get 0.",
    )

    @model_validator(mode="after")
    def _stage2_needs_images(self) -> RewardsRequest:
        if self.stage == 2:
            missing = [i for i, s in enumerate(self.samples) if not s.image]
            if missing:
                raise ValueError(
                    f"stage 2 edits the input image: samples[{missing[0]}].image is missing "
                    f"({len(missing)} sample(s) without one); send base64 PNG/JPEG/WebP or use stage 1"
                )
        return self


class RewardSampleResult(BaseModel):
    """One sample's reward and why: ``score`` is what a trainer uses; the rest is detail for logs."""

    index: int
    score: float
    status: RewardStatus
    stage1: Stage1Score | None = Field(default=None, description="None only when the sample timed out.")
    stage2: Stage2Score | None = None
    error: str | None = None

    @classmethod
    def from_result(cls, result: RewardResult) -> RewardSampleResult:
        status = RewardStatus.SCORED if result.stage2 is None else RewardStatus(result.stage2.status.value)
        return cls(
            index=result.index,
            score=result.score,
            status=status,
            stage1=result.stage1,
            stage2=result.stage2,
            error=result.stage2.error if result.stage2 is not None else None,
        )

    @classmethod
    def timed_out(cls, index: int, waited_s: float) -> RewardSampleResult:
        return cls(
            index=index,
            score=0.0,
            status=RewardStatus.TIMED_OUT,
            error=f"no stage-2 result within {waited_s:g} s (scored 0, as a failed edit is)",
        )


class RewardsResponse(BaseModel):
    """Scores in input order, with per-sample detail."""

    object: Literal["reward.batch"] = "reward.batch"
    stage: RewardStage
    batch_id: str | None = Field(default=None, description="The stage-2 batch in the reward store (for logs).")
    scores: list[float]
    results: list[RewardSampleResult]
    missing: list[int] = Field(default_factory=list, description="Indices that timed out and scored 0.")
    timings_ms: dict[str, float] = Field(default_factory=dict)
