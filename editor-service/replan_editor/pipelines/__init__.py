"""Region-edit pipelines: diffusers adapters for FLUX.1 Kontext and Qwen-Image-Edit with region attention.

Public API: `RegionEditPipeline` (load, resolve settings, `edit`), `EditResult`, `EditCancelled`. The
attention processors (`FluxRegionAttnProcessor`, `QwenRegionAttnProcessor`) and the per-step `RegionMask`
are exported for tests and benchmarks. Importing this package loads torch and diffusers.
"""

from __future__ import annotations

from replan_editor.pipelines.flux_processor import FluxRegionAttnProcessor
from replan_editor.pipelines.qwen_processor import QwenRegionAttnProcessor
from replan_editor.pipelines.region_edit import EditResult, RegionEditPipeline
from replan_editor.pipelines.region_mask import REGION_MASK_KWARG, RegionMask, RulePhases
from replan_editor.pipelines.steps import EditCancelled

__all__ = [
    "REGION_MASK_KWARG",
    "EditCancelled",
    "EditResult",
    "FluxRegionAttnProcessor",
    "QwenRegionAttnProcessor",
    "RegionEditPipeline",
    "RegionMask",
    "RulePhases",
]
