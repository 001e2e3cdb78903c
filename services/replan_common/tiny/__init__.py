"""Tiny random-weight models for tests and the CPU `tiny` preset: the real classes, built from code.

Owns builders for a tiny Qwen2.5-VL (planner), FLUX.1 Kontext and Qwen-Image-Edit (editors), each from a
tiny config with seeded random weights and locally trained tokenizers, plus save/load to a local directory
so services exercise their real `from_pretrained(local_dir)` path. Nothing here downloads anything.
Names are imported lazily so that `import replan_common.tiny.qwen_vl` does not pull in diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "build_tiny_qwen_vl": "qwen_vl",
    "save_tiny_qwen_vl": "qwen_vl",
    "load_qwen_vl": "qwen_vl",
    "load_qwen_vl_processor": "qwen_vl",
    "make_qwen_vl_processor": "qwen_vl",
    "QWEN_VL_CHAT_TEMPLATE": "qwen_vl",
    "build_tiny_flux_kontext_pipeline": "flux_kontext",
    "save_tiny_flux_kontext_pipeline": "flux_kontext",
    "load_flux_kontext_pipeline": "flux_kontext",
    "build_tiny_qwen_image_edit_pipeline": "qwen_image_edit",
    "save_tiny_qwen_image_edit_pipeline": "qwen_image_edit",
    "load_qwen_image_edit_pipeline": "qwen_image_edit",
    "build_qwen2_tokenizer": "tokenizers",
    "build_clip_tokenizer": "tokenizers",
    "build_t5_tokenizer": "tokenizers",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
