"""Reading a judge's reply into a score.

Order, as the original evaluator: a fenced JSON block (```` ```json {...} ``` ````, language tag
optional) → the whole reply as JSON → the first stand-alone digit 1-5 in the text → failed. A failed
verdict has no score and counts as 0 downstream.

Choices where the facts leave room:

* A JSON object that parses but lacks ``<dim>_score`` (and a plain ``score``) is a failure; we do not then
  fish a digit out of its reasoning, which would score a sentence like "step 1 ...". (Same as the original.)
* A score given as a numeric string (``"5"``) is accepted; booleans and non-finite numbers are failures.
* Scores are clamped into the scale's range [1, 5]; an in-range value off the dimension's grid (a 3 on
  Target) is kept, so binarising at ≥ 4 and averaging behave as in the original.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from enum import Enum

from replan_eval.judge.dimensions import Dimension, spec

__all__ = ["ParseMethod", "ParsedReply", "parse_reply"]

_FENCED_JSON = re.compile(r"```(?:json|JSON)?\s*(\{.*?\})\s*```", re.DOTALL)
_FIRST_DIGIT = re.compile(r"\b([1-5])\b")


class ParseMethod(str, Enum):
    """How a score was read from the reply."""

    FENCED_JSON = "fenced_json"
    JSON = "json"
    DIGIT = "digit"
    FAILED = "failed"


@dataclass(frozen=True)
class ParsedReply:
    score: float | None
    raw_score: float | None
    reasoning: str
    method: ParseMethod


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def _from_object(obj: dict[str, object], dimension: Dimension, method: ParseMethod) -> ParsedReply:
    dim = spec(dimension)
    raw_value = obj.get(dim.score_key, obj.get("score"))
    reasoning = obj.get("reasoning")
    reasoning_text = reasoning if isinstance(reasoning, str) else ""
    raw = _as_number(raw_value)
    if raw is None:
        return ParsedReply(None, None, reasoning_text, ParseMethod.FAILED)
    return ParsedReply(dim.clamp(raw), raw, reasoning_text, method)


def _load_object(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_reply(text: str | None, dimension: Dimension) -> ParsedReply:
    """Read the score for ``dimension`` from a judge's reply text (see the module docstring)."""
    if not text:
        return ParsedReply(None, None, "", ParseMethod.FAILED)
    fenced = _FENCED_JSON.search(text)
    if fenced:
        obj = _load_object(fenced.group(1))
        if obj is not None:
            return _from_object(obj, dimension, ParseMethod.FENCED_JSON)
    obj = _load_object(text.strip())
    if obj is not None:
        return _from_object(obj, dimension, ParseMethod.JSON)
    digit = _FIRST_DIGIT.search(text)
    if digit:
        raw = float(digit.group(1))
        return ParsedReply(spec(dimension).clamp(raw), raw, text.strip(), ParseMethod.DIGIT)
    return ParsedReply(None, None, text.strip(), ParseMethod.FAILED)
