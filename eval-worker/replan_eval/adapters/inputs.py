"""Turning what trainers hand a reward function into `RewardSample`s: images, extra info, stages.

Trainers carry a rollout's input image in many forms: base64 or a data URI (the original reward's
``input_image_base64``), a file path, raw bytes, a PIL image (TRL datasets), the Hugging Face ``Image``
struct ``{"bytes", "path"}``, or any of these wrapped in a one-element list (verl and EasyR1 batches).
``extra_info`` arrives as a dict or as a JSON string (parquet columns). The stage of a sample can follow
the original's task names, so one batch function serves both training stages.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import JsonValue, TypeAdapter, ValidationError

from replan_eval.rewards.store import RewardStage

__all__ = ["TASK_STAGES", "encode_image", "extra_info_dict", "find_image", "stage_for_task"]

#: The original's task names (``task_name`` in the data) and the reward stage each one means.
TASK_STAGES: dict[str, RewardStage] = {"text_refinement_edit": 1, "edit_region_planning": 2}

#: Where a rollout's image may be found in a reward input or its extra info, in order of preference.
IMAGE_KEYS = ("image", "input_image_base64", "image_base64", "images", "multi_modal_data")

_JSON_OBJECT: TypeAdapter[dict[str, JsonValue]] = TypeAdapter(dict[str, JsonValue])
_MAX_PATH_CHARS = 4096


def _png_b64(image: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # type: ignore[attr-defined]
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def encode_image(value: object) -> str | None:
    """The image as base64 (or a data URI, passed through), or None when ``value`` holds no image."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return encode_image(value[0]) if value else None
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return encode_image(value["bytes"])
        if value.get("path"):
            return encode_image(Path(str(value["path"])))
        # verl's multi_modal_data: {"image": [...]} or {"images": [...]}
        return encode_image(value.get("image") or value.get("images"))
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Path):
        return base64.b64encode(value.read_bytes()).decode("ascii")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if len(text) < _MAX_PATH_CHARS and os.path.isfile(text):
            return base64.b64encode(Path(text).read_bytes()).decode("ascii")
        return text
    if hasattr(value, "save") and hasattr(value, "size"):  # a PIL image, without importing PIL here
        return _png_b64(value)
    raise TypeError(f"cannot read an image from a {type(value).__name__}; send base64, bytes, a path or a PIL image")


def find_image(*sources: Mapping[str, object] | None) -> str | None:
    """The first image under `IMAGE_KEYS` in ``sources`` (e.g. the reward input, then its extra info)."""
    for source in sources:
        if not source:
            continue
        for key in IMAGE_KEYS:
            if key in source:
                encoded = encode_image(source[key])
                if encoded:
                    return encoded
    return None


def extra_info_dict(value: object) -> dict[str, JsonValue]:
    """``extra_info`` as a JSON object: a dict, or a string holding one; anything else is empty."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    if not isinstance(value, Mapping):
        return {}
    kept = {str(k): v for k, v in value.items() if k not in IMAGE_KEYS}
    try:
        return _JSON_OBJECT.validate_python(kept)
    except ValidationError:
        # Some field is not JSON (an array, a tensor): keep only what the reward reads.
        try:
            return _JSON_OBJECT.validate_python({"instruction_details": value.get("instruction_details")})
        except ValidationError:
            return {}


def stage_for_task(*names: object) -> RewardStage | None:
    """The stage named by the first known task name among ``names`` (data source, ``task_name``…)."""
    for name in names:
        if isinstance(name, str) and name in TASK_STAGES:
            return TASK_STAGES[name]
    return None
