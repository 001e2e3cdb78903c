"""Stage-1 GRPO reward ("format and reasoning"): a CPU-only score of one planner response.

    total = 0.5·format + 0.3·quality + 0.2·region

computed on the response after whitespace around every ``<``, ``>`` and ``/`` has been removed (so
``< think >`` reads as ``<think>``; note this also touches content, e.g. ``and / or`` → ``and/or``).

* **format** ∈ {0, 1}: 1 when the whole stripped response is ``<think>…</think><gen_image>…</gen_image>``
  followed by ``<region>…</region>`` if (and only if) a complete region tag occurs anywhere. Tag contents
  are matched lazily and may contain anything, as in the original, so a response that repeats a tag pair
  can still match (pinned by a test).
* **quality** (unbounded below): ramp(len(think), 50 chars) · 0.25, −0.25 when think is over 512 chars,
  −20 when think is a template placeholder; ±0.25 for valid/invalid region JSON when the region tag has
  content; ramp(len(gen_image), 20 chars) · 0.25, −0.25 over 512 chars, −20 when gen_image is empty
  (or missing) or a placeholder. ``ramp(n, m) = min(n, m) / m``.
* **region** (0 when there is no region tag or it is empty): valid JSON list of ``{bbox_2d, hint}``
  items → +0.5, else −0.5 and nothing more; +0.2 for 1–5 regions; −1 per placeholder or example hint and
  −1 per example box copied from the template; +0.2 when there is at least one region and no hint is a
  placeholder; capped at 1.0 (the cap cannot bind: the most a valid region can earn is 0.9).

Tag contents are the first occurrence of each tag, stripped; lengths are counted in characters.

Choices where the facts leave room (each pinned by a test in ``tests/unit/eval/test_stage1.py``):

1. *Valid region JSON* is read literally from the facts ("valid JSON", "4-number ``bbox_2d``"): JSON
   ``true``/``false`` are not numbers and ``NaN``/``Infinity`` are not JSON, so both make the region
   invalid. The original code accepted them through Python's ``json`` and ``isinstance(x, int)``.
2. *Placeholder detection* compares after trimming, collapsing inner whitespace and case-folding, so a
   template example copied with different spacing or capitals still counts as copied. The original
   compared exact strings. A whitespace-only hint counts as the empty placeholder.
3. *Example boxes* match by numeric value (``[10, 150.0, 150, 210]`` is the template's first box).
4. The placeholder and example lists default to the original RePlan planner template (the text the
   released checkpoint and its rollouts were trained on) and are a parameter (`Stage1Rules`), so a
   planner prompt with different examples can be scored against its own.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_RULES",
    "FORMAT_WEIGHT",
    "QUALITY_WEIGHT",
    "REGION_WEIGHT",
    "Stage1Diagnostics",
    "Stage1Rules",
    "Stage1Score",
    "extract_tag",
    "format_score",
    "normalize_tags",
    "quality_score",
    "region_items",
    "region_score",
    "score_stage1",
]

FORMAT_WEIGHT = 0.5
QUALITY_WEIGHT = 0.3
REGION_WEIGHT = 0.2

_THINK_RAMP_CHARS = 50
_GLOBAL_RAMP_CHARS = 20
_RAMP_REWARD = 0.25
_MAX_CONTENT_CHARS = 512
_LENGTH_PENALTY = 0.25
_PLACEHOLDER_PENALTY = 20.0
_REGION_JSON_QUALITY = 0.25

_REGION_VALID = 0.5
_REGION_INVALID = -0.5
_REGION_COUNT_BONUS = 0.2
_REGION_COUNT_RANGE = (1, 5)
_REGION_COPY_PENALTY = 1.0
_REGION_HINTS_BONUS = 0.2
_REGION_CAP = 1.0

_TAG_SPACE = re.compile(r"\s*([<>/])\s*")
_REGION_PRESENT = re.compile(r"<region>.*?</region>", re.DOTALL)
_FORMAT_WITH_REGION = re.compile(r"<think>.*?</think>\s*<gen_image>.*?</gen_image>\s*<region>.*?</region>", re.DOTALL)
_FORMAT_WITHOUT_REGION = re.compile(r"<think>.*?</think>\s*<gen_image>.*?</gen_image>", re.DOTALL)


def normalize_tags(response: str) -> str:
    """Remove whitespace on either side of every ``<``, ``>`` and ``/`` (the original's pre-processing)."""
    return _TAG_SPACE.sub(r"\1", response)


def _canonical(text: str) -> str:
    """The form placeholders are compared in: trimmed, inner whitespace collapsed, case-folded."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Stage1Rules:
    """What counts as a copied template placeholder; defaults are the original RePlan planner template."""

    think_placeholders: frozenset[str] = frozenset(
        {
            "Reasoning process",
            "Your reasoning process to understand the user's instruction based on the image. Decompose the "
            "instruction into global and local edits, identifying regions for editing.",
            "First, state the user's main goal based on their instruction. Then, detail the global and local "
            "edits required to achieve this goal, explaining your reasoning for each.",
        }
    )
    global_placeholders: frozenset[str] = frozenset(
        {"Detailed prompt for the image generator", "Global edit instruction"}
    )
    hint_placeholders: frozenset[str] = frozenset(
        {
            "how to edit for this region",
            "change the color of this one apple to blue",
            "keep this one apple unchanged",
        }
    )
    example_bboxes: frozenset[tuple[float, float, float, float]] = frozenset(
        {(10.0, 150.0, 150.0, 210.0), (150.0, 50.0, 200.0, 150.0)}
    )
    _think: frozenset[str] = field(init=False, repr=False, compare=False)
    _global: frozenset[str] = field(init=False, repr=False, compare=False)
    _hint: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Placeholders go through the same tag-whitespace normalisation as the response they are compared to.
        def canon(texts: frozenset[str]) -> frozenset[str]:
            return frozenset(_canonical(normalize_tags(t)) for t in texts)

        object.__setattr__(self, "_think", canon(self.think_placeholders))
        object.__setattr__(self, "_global", canon(self.global_placeholders))
        object.__setattr__(self, "_hint", canon(self.hint_placeholders) | {""})

    def is_think_placeholder(self, think: str) -> bool:
        return _canonical(think) in self._think

    def is_global_placeholder(self, global_prompt: str) -> bool:
        """Empty counts: an empty or missing ``<gen_image>`` is penalised like a placeholder."""
        canonical = _canonical(global_prompt)
        return canonical == "" or canonical in self._global

    def is_hint_placeholder(self, hint: str) -> bool:
        return _canonical(hint) in self._hint

    def is_example_bbox(self, bbox: list[float]) -> bool:
        return len(bbox) == 4 and (bbox[0], bbox[1], bbox[2], bbox[3]) in self.example_bboxes


DEFAULT_RULES = Stage1Rules()


class Stage1Diagnostics(BaseModel):
    """Why a response scored what it did; carried in the reward's per-sample detail."""

    model_config = ConfigDict(frozen=True)

    think_chars: int
    global_chars: int
    has_region: bool = Field(description="The region tag is present with non-blank content.")
    region_json_valid: bool | None = Field(description="None when there is no region content.")
    region_count: int | None = Field(description="Number of regions when the JSON is valid.")
    think_placeholder: bool
    global_placeholder: bool = Field(description="Empty/missing `<gen_image>` or a template placeholder.")
    placeholder_hints: int
    example_bboxes: int


class Stage1Score(BaseModel):
    """The stage-1 breakdown: ``total = 0.5·format + 0.3·quality + 0.2·region``."""

    model_config = ConfigDict(frozen=True)

    format: float
    quality: float
    region: float
    total: float
    diagnostics: Stage1Diagnostics


def extract_tag(text: str, tag: str) -> str | None:
    """Stripped content of the first ``<tag>…</tag>``, or None when there is none."""
    match = re.search(f"<{tag}>(.*?)</{tag}>", text, re.DOTALL)
    return match.group(1).strip() if match else None


def format_score(text: str) -> float:
    """1.0 when the (normalised) response is exactly think → gen_image → optional region."""
    pattern = _FORMAT_WITH_REGION if _REGION_PRESENT.search(text) else _FORMAT_WITHOUT_REGION
    return 1.0 if pattern.fullmatch(text.strip()) else 0.0


def _ramp(length: int, full_at: int, reward: float) -> float:
    return reward * min(length, full_at) / full_at


def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not valid JSON")


def region_items(region_text: str) -> list[tuple[list[float], str]] | None:
    """The ``(bbox_2d, hint)`` items of region JSON, or None when it is not a valid region list.

    Valid: a JSON list whose items are objects with ``bbox_2d`` (a list of exactly 4 JSON numbers) and
    ``hint`` (a string); other keys such as ``point_2d`` are allowed and ignored.
    """
    try:
        data = json.loads(region_text, parse_constant=_reject_constant)
    except ValueError:  # json.JSONDecodeError is a ValueError, and so is a rejected NaN/Infinity
        return None
    if not isinstance(data, list):
        return None
    items: list[tuple[list[float], str]] = []
    for item in data:
        if not isinstance(item, dict):
            return None
        bbox, hint = item.get("bbox_2d"), item.get("hint")
        if not isinstance(bbox, list) or len(bbox) != 4 or not isinstance(hint, str):
            return None
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            return None
        if not all(math.isfinite(v) for v in bbox):  # e.g. 1e999 parses to inf
            return None
        items.append(([float(v) for v in bbox], hint))
    return items


def quality_score(text: str, rules: Stage1Rules = DEFAULT_RULES) -> float:
    """The content-quality term of a normalised response (see the module docstring)."""
    think = extract_tag(text, "think") or ""
    global_prompt = extract_tag(text, "gen_image") or ""
    region = extract_tag(text, "region") or ""

    score = _ramp(len(think), _THINK_RAMP_CHARS, _RAMP_REWARD)
    if rules.is_think_placeholder(think):
        score -= _PLACEHOLDER_PENALTY
    if len(think) > _MAX_CONTENT_CHARS:
        score -= _LENGTH_PENALTY
    if region:
        score += _REGION_JSON_QUALITY if region_items(region) is not None else -_REGION_JSON_QUALITY
    score += _ramp(len(global_prompt), _GLOBAL_RAMP_CHARS, _RAMP_REWARD)
    if rules.is_global_placeholder(global_prompt):
        score -= _PLACEHOLDER_PENALTY
    if len(global_prompt) > _MAX_CONTENT_CHARS:
        score -= _LENGTH_PENALTY
    return score


def region_score(text: str, rules: Stage1Rules = DEFAULT_RULES) -> float:
    """The region term of a normalised response (see the module docstring)."""
    region = extract_tag(text, "region") or ""
    if not region:
        return 0.0
    items = region_items(region)
    if items is None:
        return _REGION_INVALID
    score = _REGION_VALID
    low, high = _REGION_COUNT_RANGE
    if low <= len(items) <= high:
        score += _REGION_COUNT_BONUS
    placeholder_hints = 0
    for bbox, hint in items:
        if rules.is_hint_placeholder(hint):
            score -= _REGION_COPY_PENALTY
            placeholder_hints += 1
        if rules.is_example_bbox(bbox):
            score -= _REGION_COPY_PENALTY
    if items and placeholder_hints == 0:
        score += _REGION_HINTS_BONUS
    return min(score, _REGION_CAP)


def _diagnostics(text: str, rules: Stage1Rules) -> Stage1Diagnostics:
    think = extract_tag(text, "think") or ""
    global_prompt = extract_tag(text, "gen_image") or ""
    region = extract_tag(text, "region") or ""
    items = region_items(region) if region else None
    return Stage1Diagnostics(
        think_chars=len(think),
        global_chars=len(global_prompt),
        has_region=bool(region),
        region_json_valid=(items is not None) if region else None,
        region_count=len(items) if items is not None else None,
        think_placeholder=rules.is_think_placeholder(think),
        global_placeholder=rules.is_global_placeholder(global_prompt),
        placeholder_hints=sum(rules.is_hint_placeholder(h) for _, h in items or []),
        example_bboxes=sum(rules.is_example_bbox(b) for b, _ in items or []),
    )


def score_stage1(response: str, rules: Stage1Rules = DEFAULT_RULES) -> Stage1Score:
    """Score one raw planner response: normalise tag whitespace, then format, quality and region."""
    text = normalize_tags(response)
    fmt = format_score(text)
    quality = quality_score(text, rules)
    region = region_score(text, rules)
    return Stage1Score(
        format=fmt,
        quality=quality,
        region=region,
        total=FORMAT_WEIGHT * fmt + QUALITY_WEIGHT * quality + REGION_WEIGHT * region,
        diagnostics=_diagnostics(text, rules),
    )
