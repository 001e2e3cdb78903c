"""The region plan: what the planner produces and the editor consumes.

A plan is a global prompt plus regions, each a box in *original-image pixels* with a local hint.
This module owns the models, their JSON schema and the serialisation back to the planner's tagged
text; reading planner output lives in `plan_parser`.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

#: What the RePlan planner writes in `<gen_image>` when the edit has no global part.
KEEP_UNCHANGED_PROMPT = "keep remaining part of image unchanged."

BBox = tuple[float, float, float, float]

#: A coordinate as it may arrive over HTTP: a JSON number only (no "12" strings, no booleans).
Coordinate = Annotated[float, Strict()]


class Region(BaseModel):
    """One local edit: a box `[x1, y1, x2, y2]` in original-image pixels and a short visual hint."""

    model_config = ConfigDict(frozen=True)

    bbox: tuple[Coordinate, Coordinate, Coordinate, Coordinate] = Field(
        description="x1, y1, x2, y2 in original-image pixels (x2 > x1, y2 > y1)."
    )
    hint: str = Field(min_length=1, description="What this region should look like after the edit.")

    @field_validator("bbox")
    @classmethod
    def _finite_and_ordered(cls, bbox: BBox) -> BBox:
        if not all(math.isfinite(v) for v in bbox):
            raise ValueError("bbox coordinates must be finite numbers")
        x1, y1, x2, y2 = bbox
        if x2 <= x1 or y2 <= y1:
            raise ValueError(f"bbox {list(bbox)} is degenerate: need x2 > x1 and y2 > y1")
        return bbox

    @field_validator("hint")
    @classmethod
    def _hint_not_blank(cls, hint: str) -> str:
        hint = hint.strip()
        if not hint:
            raise ValueError("hint must not be blank")
        return hint


class RegionPlan(BaseModel):
    """A global prompt plus any number of regions (zero regions = a plain global edit)."""

    model_config = ConfigDict(frozen=True)

    reasoning: str = Field(default="", description="The planner's reasoning (`<think>`), kept for display.")
    global_prompt: str = Field(description="Instruction for the whole image (`<gen_image>`).")
    regions: tuple[Region, ...] = Field(default=(), description="Local edits; boxes may overlap.")

    @field_validator("reasoning", "global_prompt")
    @classmethod
    def _strip_text(cls, text: str) -> str:
        # The parser strips tag contents; stripping here too keeps the tagged text and the plan JSON
        # forms of one plan equal, so serialise-then-parse gives the same plan.
        return text.strip()

    @property
    def is_empty(self) -> bool:
        """True when the plan carries no region guidance at all."""
        return not self.regions

    def to_tagged_text(self) -> str:
        """Serialise in the planner's format, so the plan can be re-parsed or sent to the original tools."""
        regions = [{"bbox_2d": [_plain_number(v) for v in r.bbox], "hint": r.hint} for r in self.regions]
        # "<" only occurs inside JSON strings; escaping it keeps a hint such as "a </region> sign" from
        # closing the tag early, and json.loads reads it back unchanged.
        regions_json = json.dumps(regions, ensure_ascii=False).replace("<", "\\u003c")
        return (
            f"<think>{self.reasoning}</think><gen_image>{self.global_prompt}</gen_image><region>{regions_json}</region>"
        )


def _plain_number(v: float) -> int | float:
    return int(v) if float(v).is_integer() else v


def region_plan_json_schema() -> dict[str, Any]:
    """The JSON schema of `RegionPlan`, as served in the OpenAPI documents and used for structured output."""
    return RegionPlan.model_json_schema()
