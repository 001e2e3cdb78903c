"""Reading the planner model's answer into a plan (boxes still in the model's pixel space).

Owns the step between raw model text and `replan_common.plan_parser`: regions whose box has no area are
dropped and reported (a grammar cannot forbid x2 <= x1, and one bad box should not sink an otherwise good
plan), regions in a rephrase answer are dropped and reported, and an answer the parser rejects becomes
`PlannerOutputInvalid` (HTTP 502, code ``planner_output_invalid``) whose message starts with the parser's
own code, e.g. ``[missing_region]``. Mapping boxes to original pixels is `coordinates`' job.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from replan_common.errors import PlanParseError, UpstreamError
from replan_common.plan import RegionPlan
from replan_common.plan_parser import parse_planner_output
from replan_common.protocol import PlanMode, RegionAdjustment

__all__ = ["ModelPlan", "PlannerOutputInvalid", "read_model_output"]

_REGION_BLOCK = re.compile(r"<region>(.*?)</region>", re.DOTALL)
_REGION_PARAM = re.compile(r"^regions\[(\d+)\]")
_TAIL_CHARS = 200


class PlannerOutputInvalid(UpstreamError):
    """The planner model answered, but not with a valid plan (HTTP 502: the model failed, not the client)."""

    default_code = "planner_output_invalid"

    def __init__(self, message: str, *, parse_code: str, param: str | None = None) -> None:
        super().__init__(message, param=param)
        #: The parser's code (``missing_region``, ``invalid_json``…), also the message's first word.
        self.parse_code = parse_code


@dataclass(frozen=True)
class ModelPlan:
    """A parsed answer: the plan in the model's pixel space, and where each region came from."""

    plan: RegionPlan
    #: For each region of `plan`, its index in the model's own region list (adjustments refer to these).
    source_indices: tuple[int, ...]
    adjustments: tuple[RegionAdjustment, ...]


def read_model_output(text: str, *, mode: PlanMode, finish_reason: str | None = None) -> ModelPlan:
    """Parse the model's answer; raises `PlannerOutputInvalid` naming the parser's code and where."""
    cleaned, kept, adjustments = _drop_degenerate_regions(text)
    try:
        plan = parse_planner_output(cleaned, require_regions=mode is PlanMode.REGIONS)
    except PlanParseError as exc:
        raise _invalid(exc, kept, text, finish_reason) from exc
    sources = kept if kept is not None else list(range(len(plan.regions)))
    if mode is PlanMode.REPHRASE and plan.regions:
        reason = "rephrase mode plans a global prompt only"
        adjustments += [RegionAdjustment(index=i, action="dropped", reason=reason) for i in sources]
        plan, sources = plan.model_copy(update={"regions": ()}), []
    return ModelPlan(plan=plan, source_indices=tuple(sources), adjustments=tuple(adjustments))


def _drop_degenerate_regions(text: str) -> tuple[str, list[int] | None, list[RegionAdjustment]]:
    """The text without regions whose box has no area, the model indices kept (None: nothing dropped),
    and one adjustment per drop.

    Anything this cannot read (no region tag, bad JSON, odd entries) is left untouched for the parser to
    name precisely.
    """
    think_end = text.find("</think>")
    match = _REGION_BLOCK.search(text, think_end + len("</think>") if think_end >= 0 else 0)
    if match is None:
        return text, None, []
    try:
        items = json.loads(match.group(1))
    except ValueError:
        return text, None, []
    if not isinstance(items, list):
        return text, None, []
    kept: list[int] = []
    dropped: list[RegionAdjustment] = []
    for index, item in enumerate(items):
        box = _box_of(item)
        if box is not None and not (box[2] > box[0] and box[3] > box[1]):
            reason = f"degenerate_bbox: box {_fmt(box)} has no area (need x2 > x1 and y2 > y1)"
            dropped.append(RegionAdjustment(index=index, action="dropped", reason=reason))
        else:
            kept.append(index)
    if not dropped:
        return text, None, []
    # "<" is escaped as in RegionPlan.to_tagged_text, so no hint can close the tag early.
    body = json.dumps([items[i] for i in kept], ensure_ascii=False).replace("<", "\\u003c")
    return text[: match.start(1)] + body + text[match.end(1) :], kept, dropped


def _box_of(item: Any) -> list[float] | None:
    if not isinstance(item, dict):
        return None
    raw = item.get("bbox_2d", item.get("bbox"))
    if not (isinstance(raw, list) and len(raw) == 4):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        return None
    try:
        box = [float(v) for v in raw]
    except OverflowError:
        return None
    return box if all(math.isfinite(v) for v in box) else None


def _invalid(exc: PlanParseError, kept: list[int] | None, text: str, finish_reason: str | None) -> PlannerOutputInvalid:
    param = exc.param
    if param and kept is not None:
        # The parser saw the list without the dropped regions; name the region by the model's own index.
        match = _REGION_PARAM.match(param)
        if match and int(match.group(1)) < len(kept):
            param = f"regions[{kept[int(match.group(1))]}]" + param[match.end() :]
    cut = (
        " The answer was cut off at the token limit (raise options.max_new_tokens)."
        if finish_reason == "length"
        else ""
    )
    tail = text[-_TAIL_CHARS:]
    return PlannerOutputInvalid(
        f"[{exc.code}] the planner model's answer is not a valid plan: {exc.message.rstrip('.')}.{cut} "
        f"Answer ends with: {tail!r}",
        parse_code=exc.code,
        param=param,
    )


def _fmt(box: list[float] | tuple[float, ...]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"
