"""`JudgeVerdict`: one dimension's judgement of one sample, as cached on disk and reported."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from replan_eval.judge.dimensions import Dimension
from replan_eval.judge.parsing import ParseMethod

__all__ = ["JudgeVerdict"]


class JudgeVerdict(BaseModel):
    """A score (None = failed, counted as 0), how it was read, and enough context to audit it."""

    model_config = ConfigDict(frozen=True)

    dimension: Dimension
    score: float | None = Field(description="Clamped to the scale; None when the judge failed.")
    raw_score: float | None = None
    reasoning: str = ""
    method: ParseMethod
    error: str | None = Field(default=None, description="Why the call failed, when it did.")
    judge: str = Field(default="", description="provider:model")
    prompt_version: str = ""
    reply: str = Field(default="", description="The judge's reply text, verbatim.")

    @property
    def failed(self) -> bool:
        return self.score is None

    @property
    def value(self) -> float:
        """The score with failures as 0, as every aggregate uses it."""
        return 0.0 if self.score is None else self.score
