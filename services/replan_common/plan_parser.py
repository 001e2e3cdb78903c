"""Reading planner output into a `RegionPlan`, and checking a plan's boxes against its image.

Accepts the planner's tagged text (``<think>…</think><gen_image>…</gen_image><region>[…]</region>``,
``<global>`` for ``<gen_image>``, region JSON optionally in a fenced code block) and the plan JSON itself
(bare or fenced). It is stricter than the original RePlan parser on purpose: the original returns None on a
missing tag or bad JSON and silently skips regions without a box or hint, so the edit quietly runs with
no regions (the plain backbone) and nobody learns why the result ignored the instruction. Here every
defect raises one `PlanParseError` whose `code` says what is wrong and whose `param` says where
(``regions[2].bbox``), so the planner service can retry or report it. Coordinates are not mapped here:
the boxes stay in whatever pixel space the text used (see `geometry` for the maps).

Error codes (all `PlanParseError`): ``empty_output``, ``missing_global``, ``empty_global``,
``missing_region``, ``empty_region``, ``unclosed_tag``, ``unmatched_tag``, ``duplicate_tag``,
``invalid_json``, ``region_not_list``, ``region_not_object``, ``missing_bbox``, ``conflicting_bbox``,
``bad_bbox``, ``degenerate_bbox``, ``missing_hint``, ``bad_hint``, ``empty_hint``, ``invalid_plan_json``.
`validate_plan_boxes` adds the `InvalidRegion` codes of `geometry.validate_box`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import ValidationError

from replan_common.errors import PlanParseError
from replan_common.geometry import Size, validate_box
from replan_common.plan import Region, RegionPlan

__all__ = ["parse_planner_output", "validate_plan_boxes"]

#: Every tag the planner writes. Matched exactly (lowercase, no spaces), as Qwen2.5-VL emits them.
_TAG = re.compile(r"<(/?)(think|gen_image|global|region)>")
#: A fenced code block, optionally labelled (```json); the body is group 1.
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_PARAM_BY_TAG = {
    "think": "reasoning",
    "gen_image": "global_prompt",
    "global": "global_prompt",
    "region": "regions",
}
_EXCERPT_CHARS = 60
_EXPECTED_FORMAT = "<think>…</think><gen_image>…</gen_image><region>[…]</region>"
_EXPECTED_REGION = '{"bbox_2d": [x1, y1, x2, y2], "hint": "…"}'


def parse_planner_output(text: str, *, require_regions: bool = True) -> RegionPlan:
    """Parse planner output (tagged text or plan JSON) into a `RegionPlan`, or raise `PlanParseError`.

    Args:
        require_regions: False in rephrase mode, where the planner writes only a global prompt and a
            missing ``<region>`` tag means "no regions" rather than a broken answer.
    """
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise PlanParseError(
            f"the planner output is empty; expected {_EXPECTED_FORMAT}",
            code="empty_output",
        )
    plan_json = _plan_json_candidate(text, anywhere=False)
    if plan_json is not None:
        return _parse_plan_json(plan_json, require_regions=require_regions)
    blocks = _find_blocks(text)
    if not blocks:
        plan_json = _plan_json_candidate(text, anywhere=True)
        if plan_json is not None:
            return _parse_plan_json(plan_json, require_regions=require_regions)
    return _parse_tagged(text, blocks, require_regions=require_regions)


def validate_plan_boxes(plan: RegionPlan, size: Size, *, max_overhang: float = 0.5) -> RegionPlan:
    """The plan with every box clipped to the image; raises `InvalidRegion` for a box mostly outside it."""
    regions = tuple(
        Region(
            bbox=validate_box(r.bbox, size, param=f"regions[{i}].bbox", max_overhang=max_overhang),
            hint=r.hint,
        )
        for i, r in enumerate(plan.regions)
    )
    return plan.model_copy(update={"regions": regions})


# --- tagged text ---------------------------------------------------------------------------------------


def _find_blocks(text: str) -> dict[str, list[str]]:
    """Contents of every tag block, by tag name, after checking that tags open and close in order.

    Inside ``<think>`` everything up to ``</think>`` is prose: reasoning may mention "<region>" freely.
    """
    blocks: dict[str, list[str]] = {}
    open_tag: str | None = None
    content_start = 0
    for match in _TAG.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        if open_tag == "think" and not (closing and name == "think"):
            continue
        if not closing:
            if open_tag is not None:
                raise _unclosed(open_tag, f"found <{name}> before </{open_tag}>")
            open_tag, content_start = name, match.end()
        elif open_tag == name:
            blocks.setdefault(name, []).append(text[content_start : match.start()])
            open_tag = None
        elif open_tag is not None:
            raise _unclosed(open_tag, f"found </{name}> where </{open_tag}> was expected")
        elif name == "think" and not blocks:
            # Some chat templates put <think> in the prompt, so the answer starts inside the reasoning.
            blocks["think"] = [text[: match.start()]]
        else:
            near = _excerpt_around(text, match.start())
            raise PlanParseError(
                f"found </{name}> without a matching <{name}> before it, near {near}",
                code="unmatched_tag",
                param=_PARAM_BY_TAG[name],
            )
    if open_tag is not None:
        raise _unclosed(open_tag, "the output ends first (cut off by max_new_tokens?)")
    for name, contents in blocks.items():
        if len(contents) > 1:
            raise PlanParseError(
                f"<{name}> appears {len(contents)} times; expected it once",
                code="duplicate_tag",
                param=_PARAM_BY_TAG[name],
            )
    if "gen_image" in blocks and "global" in blocks:
        raise PlanParseError(
            "both <gen_image> and <global> are present; expected one global prompt (they are the same tag)",
            code="duplicate_tag",
            param="global_prompt",
        )
    return blocks


def _unclosed(name: str, found: str) -> PlanParseError:
    return PlanParseError(f"<{name}> is not closed: {found}", code="unclosed_tag", param=_PARAM_BY_TAG[name])


def _parse_tagged(text: str, blocks: dict[str, list[str]], *, require_regions: bool) -> RegionPlan:
    reasoning = blocks.get("think", [""])[0].strip()
    global_block = blocks.get("gen_image") or blocks.get("global")
    if global_block is None:
        raise PlanParseError(
            f"no <gen_image> (or <global>) tag in the planner output {_excerpt(text)}; "
            "expected <gen_image>GLOBAL PROMPT</gen_image>",
            code="missing_global",
            param="global_prompt",
        )
    global_prompt = global_block[0].strip()
    if not global_prompt:
        raise PlanParseError(
            "<gen_image> is empty; expected the global prompt, or 'keep remaining part of image unchanged.' "
            "when the edit has no global part",
            code="empty_global",
            param="global_prompt",
        )
    if "region" not in blocks:
        if require_regions:
            raise PlanParseError(
                "no <region> tag in the planner output; expected <region>[…]</region>, "
                "with [] when the edit has no local part",
                code="missing_region",
                param="regions",
            )
        regions: tuple[Region, ...] = ()
    else:
        regions = _parse_region_json(blocks["region"][0])
    return _build_plan(reasoning=reasoning, global_prompt=global_prompt, regions=regions)


def _parse_region_json(content: str) -> tuple[Region, ...]:
    body = _unfence(content.strip())
    if not body:
        raise PlanParseError(
            "<region> is empty; expected a JSON list of regions, [] when there are none",
            code="empty_region",
            param="regions",
        )
    value = _load_json(body, param="regions")
    return _parse_regions(value)


# --- plan JSON -----------------------------------------------------------------------------------------


def _plan_json_candidate(text: str, *, anywhere: bool) -> str | None:
    """The JSON object text when the output is a plan JSON (bare or fenced) rather than tagged text.

    Output that *is* a JSON object (or one fenced object) is read as JSON before tags are looked for, so
    a reasoning string that mentions "<region>" does not turn it into tagged text; a fenced object after
    some prose counts only when the output has no tags (`anywhere`).
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        return stripped
    fence = _FENCE.search(stripped) if anywhere else _FENCE.match(stripped)
    if fence and fence.group(1).strip().startswith("{"):
        return fence.group(1).strip()
    return None


def _parse_plan_json(body: str, *, require_regions: bool) -> RegionPlan:
    value = _load_json(body, param=None)
    if not isinstance(value, dict):
        raise PlanParseError(
            f"the plan JSON is {_json_type(value)}; expected an object "
            '{"reasoning": …, "global_prompt": …, "regions": […]}',
            code="invalid_plan_json",
        )
    if "global_prompt" not in value:
        raise PlanParseError(
            f'the plan JSON has no "global_prompt" (keys: {_keys(value)}); expected the global prompt',
            code="missing_global",
            param="global_prompt",
        )
    global_prompt = value["global_prompt"]
    if isinstance(global_prompt, str) and not global_prompt.strip():
        raise PlanParseError(
            '"global_prompt" is blank; expected the global prompt, or '
            "'keep remaining part of image unchanged.' when the edit has no global part",
            code="empty_global",
            param="global_prompt",
        )
    if "regions" in value:
        regions = _parse_regions(value["regions"])
    elif require_regions:
        raise PlanParseError(
            f'the plan JSON has no "regions" (keys: {_keys(value)}); expected a list, [] for none',
            code="missing_region",
            param="regions",
        )
    else:
        regions = ()
    return _build_plan(reasoning=value.get("reasoning", ""), global_prompt=global_prompt, regions=regions)


def _build_plan(*, reasoning: Any, global_prompt: Any, regions: tuple[Region, ...]) -> RegionPlan:
    try:
        return RegionPlan(reasoning=reasoning, global_prompt=global_prompt, regions=regions)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(part) for part in error["loc"]) or None
        raise PlanParseError(
            f"the plan does not fit the schema: {error['msg']} (found {_excerpt(repr(error.get('input')))})",
            code="invalid_plan_json",
            param=param,
        ) from exc


# --- regions (shared by both forms) --------------------------------------------------------------------


def _parse_regions(value: Any) -> tuple[Region, ...]:
    if isinstance(value, dict):
        raise PlanParseError(
            f"the regions are a single JSON object (keys: {_keys(value)}); expected a list, e.g. [{{…}}]",
            code="region_not_list",
            param="regions",
        )
    if not isinstance(value, list):
        raise PlanParseError(
            f"the regions are {_describe(value)}; expected a list of objects",
            code="region_not_list",
            param="regions",
        )
    return tuple(_parse_region(item, f"regions[{i}]") for i, item in enumerate(value))


def _parse_region(item: Any, where: str) -> Region:
    if not isinstance(item, dict):
        raise PlanParseError(
            f"region is {_describe(item)}; expected an object {_EXPECTED_REGION}",
            code="region_not_object",
            param=where,
        )
    bbox = _parse_bbox(item, f"{where}.bbox")
    hint = _parse_hint(item, f"{where}.hint")
    return Region(bbox=bbox, hint=hint)


def _parse_bbox(item: dict[str, Any], param: str) -> tuple[float, float, float, float]:
    if "bbox_2d" in item and "bbox" in item and item["bbox_2d"] != item["bbox"]:
        raise PlanParseError(
            f"region has both bbox_2d {_excerpt(json.dumps(item['bbox_2d']))} and a different bbox "
            f"{_excerpt(json.dumps(item['bbox']))}; expected one box",
            code="conflicting_bbox",
            param=param,
        )
    raw = item["bbox_2d"] if "bbox_2d" in item else item.get("bbox")
    if raw is None:
        raise PlanParseError(
            f"region has no bbox_2d or bbox (keys: {_keys(item)}); expected [x1, y1, x2, y2] in pixels",
            code="missing_bbox",
            param=param,
        )
    if not (isinstance(raw, list) and len(raw) == 4 and all(_is_finite_number(v) for v in raw)):
        raise PlanParseError(
            f"bbox is {_excerpt(json.dumps(raw))}; expected 4 finite numbers [x1, y1, x2, y2]",
            code="bad_bbox",
            param=param,
        )
    x1, y1, x2, y2 = (float(v) for v in raw)
    if x2 <= x1 or y2 <= y1:
        raise PlanParseError(
            f"bbox {json.dumps(raw)} has no area; expected x2 > x1 and y2 > y1 ([x1, y1, x2, y2] order)",
            code="degenerate_bbox",
            param=param,
        )
    return (x1, y1, x2, y2)


def _is_finite_number(value: Any) -> bool:
    # bool is an int in Python but never a coordinate; huge ints overflow float().
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _parse_hint(item: dict[str, Any], param: str) -> str:
    if "hint" not in item:
        raise PlanParseError(
            f"region has no hint (keys: {_keys(item)}); expected a short description of the edited region",
            code="missing_hint",
            param=param,
        )
    hint = item["hint"]
    if not isinstance(hint, str):
        raise PlanParseError(
            f"hint is {_describe(hint)}; expected a string",
            code="bad_hint",
            param=param,
        )
    if not hint.strip():
        raise PlanParseError(
            "hint is blank; expected a short description of the edited region", code="empty_hint", param=param
        )
    return hint


# --- small helpers -------------------------------------------------------------------------------------


def _unfence(body: str) -> str:
    if body.startswith("```"):
        fence = _FENCE.match(body)
        if fence is None:
            raise PlanParseError(
                f"the code fence in <region> is not closed: {_excerpt(body)}; expected ```json … ```",
                code="invalid_json",
                param="regions",
            )
        return fence.group(1).strip()
    return body


def _load_json(body: str, *, param: str | None) -> Any:
    try:
        # NaN/Infinity are let through here and rejected as bad_bbox, which names the region.
        return json.loads(body)
    except json.JSONDecodeError as exc:
        hint = " (keys and strings need double quotes)" if "'" in body else ""
        raise PlanParseError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}, near "
            f"{_excerpt_around(body, exc.pos)}{hint}",
            code="invalid_json",
            param=param,
        ) from exc
    except (RecursionError, ValueError) as exc:
        # Untrusted text: nesting deeper than the interpreter's stack, or an integer longer than
        # Python's int-string limit, must be a parse error, not a 500.
        what = "nested too deeply" if isinstance(exc, RecursionError) else "holds a number too long to read"
        raise PlanParseError(
            f"invalid JSON: it {what}, near {_excerpt(body)}", code="invalid_json", param=param
        ) from exc


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _describe(value: Any) -> str:
    """Type and short excerpt of a JSON value, for messages: "a string 'the saucer'"."""
    if value is None:
        return "null"
    return f"{_json_type(value)} {_excerpt(json.dumps(value, ensure_ascii=False))}"


def _keys(obj: dict[str, Any]) -> str:
    return ", ".join(str(k) for k in obj) or "none"


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= _EXCERPT_CHARS else flat[: _EXCERPT_CHARS - 1] + "…")


def _excerpt_around(text: str, pos: int) -> str:
    start = max(0, pos - _EXCERPT_CHARS // 2)
    return _excerpt(text[start : start + _EXCERPT_CHARS])
