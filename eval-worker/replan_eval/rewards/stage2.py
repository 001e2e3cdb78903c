"""Stage-2 GRPO reward ("planning"): edit with the planner's plan, judge the edit, combine with stage 1.

For one rollout (facts §4)::

    s1 = stage-1 score of the response
    gate: s1.format == 1 and s1.region >= 0.7, else planning = 0 (no edit is made)
    edit the input image with the raw response as the plan (editor service, over HTTP)
    judge Target, Effect, Consistency (three independent calls, in parallel)
    T, E, C = 1 if score >= 4 else 0
    planning = (T + E + C·E) / 3          consistency counts only when the effect succeeded
    total    = planning + 0.2 · s1.total

Choices where the facts leave room (each pinned by a test in ``tests/unit/eval/test_stage2.py``):

1. Missing ``extra_info.instruction_details.editing_instruction`` or ``.referring_expression`` (absent
   or blank) gives T = E = C = planning = 0 as the original, and no edit is made. The stage-1 term still
   counts (``total = 0.2·s1.total``), as in the original's combined score.
2. A failed edit (the editor rejects the plan or the image, or stays down through its retries) scores
   planning = 0, as the original; the status and error say why, so a trainer can tell a bad plan from a
   broken editor.
3. A judge dimension that fails or gives no readable score is 0 for that dimension only.
4. Scores are clamped to [1, 5] before binarising; clamping never moves a score across 4, so the
   result equals binarising the raw score as the original does.
5. The editor gets the response stripped but otherwise as the planner wrote it (the original sends it the
   same way); the editor parses it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from replan_common.errors import ReplanError
from replan_common.protocol import EditRequest, EditSettings
from replan_eval.editor_client import EditorClient
from replan_eval.judge import Dimension, Judge, JudgeImage, JudgeInputs, JudgeVerdict
from replan_eval.rewards.stage1 import DEFAULT_RULES, Stage1Rules, Stage1Score, score_stage1

logger = logging.getLogger(__name__)

__all__ = [
    "REWARD_DIMENSIONS",
    "RewardInput",
    "Stage2Config",
    "Stage2Score",
    "Stage2Scorer",
    "Stage2Status",
    "planning_score",
]

REWARD_DIMENSIONS = (Dimension.TARGET, Dimension.EFFECT, Dimension.CONSISTENCY)


def _reward_edit_settings() -> EditSettings:
    # The original reward server: Kontext defaults, expand 0.15 (ratio), default rules throughout.
    return EditSettings(expand_value=0.15, rule_switch_ratio=0.0)


@dataclass(frozen=True)
class Stage2Config:
    """Knobs of the stage-2 reward; defaults are the original's."""

    binarize_at: float = 4.0
    stage1_weight: float = 0.2
    gate_min_region: float = 0.7
    edit_settings: EditSettings = field(default_factory=_reward_edit_settings)
    stage1_rules: Stage1Rules = DEFAULT_RULES


class RewardInput(BaseModel):
    """One rollout to score, in the original reward's field names (``input_image_base64`` also accepted)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    response: str = Field(description="The planner's raw output.")
    image: str = Field(
        validation_alias=AliasChoices("image", "input_image_base64"),
        description="The input image, base64 or a data URI.",
    )
    extra_info: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("image", mode="before")
    @classmethod
    def _first_of_list(cls, value: object) -> object:
        # verl batches carry the image as a one-element list.
        if isinstance(value, list) and value:
            return value[0]
        return value

    def instruction_details(self) -> tuple[str, str] | None:
        """``(editing_instruction, referring_expression)`` when both are non-blank strings, else None."""
        details = self.extra_info.get("instruction_details")
        if not isinstance(details, dict):
            return None
        instruction, ref_exp = details.get("editing_instruction"), details.get("referring_expression")
        if isinstance(instruction, str) and isinstance(ref_exp, str) and instruction.strip() and ref_exp.strip():
            return instruction, ref_exp
        return None


class Stage2Status(str, Enum):
    SCORED = "scored"
    GATED = "gated"
    MISSING_FIELDS = "missing_fields"
    EDIT_FAILED = "edit_failed"


class Stage2Score(BaseModel):
    """The stage-2 breakdown: ``total = planning + 0.2·stage1.total``."""

    model_config = ConfigDict(frozen=True)

    status: Stage2Status
    stage1: Stage1Score
    target: float = Field(default=0.0, description="1 when the Target score is >= 4.")
    effect: float = 0.0
    consistency: float = 0.0
    planning: float = 0.0
    total: float
    error: str | None = None
    verdicts: dict[Dimension, JudgeVerdict] = Field(default_factory=dict)


def planning_score(target: float, effect: float, consistency: float) -> float:
    """(T + E + C·E) / 3 on binarised scores."""
    return (target + effect + consistency * effect) / 3.0


def _decode_b64(data: str) -> bytes:
    text = data.strip()
    if text.startswith("data:"):
        text = text.split(",", 1)[-1]
    return base64.b64decode(text)


class Stage2Scorer:
    """Scores rollouts with one editor (or `EditorPool`) and one judge."""

    def __init__(self, editor: EditorClient, judge: Judge, config: Stage2Config | None = None) -> None:
        self._editor = editor
        self._judge = judge
        self._config = config or Stage2Config()

    def score(self, sample: RewardInput) -> Stage2Score:
        cfg = self._config
        stage1 = score_stage1(sample.response, cfg.stage1_rules)
        stage1_part = cfg.stage1_weight * stage1.total

        def unscored(status: Stage2Status, error: str | None = None) -> Stage2Score:
            return Stage2Score(status=status, stage1=stage1, total=stage1_part, error=error)

        if not (stage1.format == 1.0 and stage1.region >= cfg.gate_min_region):
            return unscored(Stage2Status.GATED)
        details = sample.instruction_details()
        if details is None:
            return unscored(
                Stage2Status.MISSING_FIELDS,
                "extra_info.instruction_details needs non-blank editing_instruction and referring_expression",
            )
        instruction, ref_exp = details

        try:
            request = EditRequest(image=sample.image, plan_text=sample.response.strip(), settings=cfg.edit_settings)
            edited = self._editor.edit(request)
            inputs = JudgeInputs(
                instruction=instruction,
                referring_expression=ref_exp,
                original=JudgeImage.from_bytes(_decode_b64(sample.image)),
                edited=JudgeImage.from_bytes(_decode_b64(edited.image)),
            )
        except (ReplanError, ValidationError, ValueError) as exc:
            # ValueError covers undecodable base64 and images that are not PNG/JPEG/WebP.
            logger.warning("stage-2 edit failed: %s", exc)
            return unscored(Stage2Status.EDIT_FAILED, f"{type(exc).__name__}: {exc}")

        verdicts = self._judge.evaluate_many(inputs, REWARD_DIMENSIONS)
        binary = {d: 1.0 if v.value >= cfg.binarize_at else 0.0 for d, v in verdicts.items()}
        planning = planning_score(binary[Dimension.TARGET], binary[Dimension.EFFECT], binary[Dimension.CONSISTENCY])
        failures = [d.value for d, v in verdicts.items() if v.failed]
        return Stage2Score(
            status=Stage2Status.SCORED,
            stage1=stage1,
            target=binary[Dimension.TARGET],
            effect=binary[Dimension.EFFECT],
            consistency=binary[Dimension.CONSISTENCY],
            planning=planning,
            total=planning + stage1_part,
            error=f"judge failed on {', '.join(failures)} (scored 0)" if failures else None,
            verdicts=verdicts,
        )

    def score_batch(self, samples: Sequence[RewardInput], *, max_workers: int = 8) -> list[Stage2Score]:
        """Score a batch concurrently; results in input order."""
        if not samples:
            return []
        with ThreadPoolExecutor(
            max_workers=max(1, min(max_workers, len(samples))), thread_name_prefix="reward"
        ) as pool:
            return list(pool.map(self.score, samples))
