"""`RegionEditPipeline`: the region-edit API the editor service calls, for either backbone.

Owns loading (a hub id or local directory, or the CPU `tiny` preset), settings resolution (per-backbone
defaults), validation of the plan against the image (boxes in original pixels; `InvalidRegion` naming
`regions[i].bbox`), the working resolution and the resize back, the `replace_global_prompt` /
`delete_main_prompt` options, and `EditResult`. The backbone-specific work is in the adapters
(`flux_kontext`, `qwen_image_edit`); the attention math is the engine's (`replan_editor.attention`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from replan_common.errors import Unprocessable
from replan_common.geometry import Size, validate_box
from replan_common.plan import Region, RegionPlan
from replan_common.protocol import Backbone, EditSettings
from replan_editor.attention.mask_plan import MaskPlanCache
from replan_editor.pipelines.adapter import BackboneAdapter, PreparedEdit, timed
from replan_editor.pipelines.defaults import BACKBONE_DEFAULTS, TINY_DEFAULTS, BackboneDefaults, resolve_settings
from replan_editor.pipelines.flux_kontext import FluxKontextAdapter
from replan_editor.pipelines.qwen_image_edit import QwenImageEditAdapter
from replan_editor.pipelines.resolution import working_size
from replan_editor.pipelines.steps import StepCallback, StopCheck

logger = logging.getLogger(__name__)

_ADAPTERS: dict[Backbone, type[BackboneAdapter]] = {
    Backbone.FLUX_KONTEXT: FluxKontextAdapter,
    Backbone.QWEN_IMAGE_EDIT: QwenImageEditAdapter,
}


@dataclass(frozen=True)
class EditResult:
    """One finished edit.

    Attributes:
        image: the edited image, resized back to the input's size.
        plan: the plan as applied: boxes clipped to the image (original pixels), global prompt resolved.
        settings: every setting resolved to the value used.
        timings_ms: wall times of the stages (`validate_ms`, `encode_ms`, `mask_plan_ms`, `denoise_ms`
            (the pipeline call: denoising plus VAE), `resize_ms`, `total_ms`).
    """

    image: Image.Image
    plan: RegionPlan
    settings: EditSettings
    timings_ms: dict[str, float] = field(default_factory=dict)


def apply_plan_options(plan: RegionPlan, image_size: Size, settings: EditSettings) -> RegionPlan:
    """The plan as it will be applied: every box validated and clipped, the global prompt resolved."""
    regions = tuple(
        Region(bbox=validate_box(region.bbox, image_size, param=f"regions[{i}].bbox"), hint=region.hint)
        for i, region in enumerate(plan.regions)
    )
    if settings.delete_main_prompt and not regions:
        raise Unprocessable(
            "delete_main_prompt drops the global prompt's tokens, which leaves nothing to condition on when the "
            "plan has no regions; give at least one region or turn delete_main_prompt off",
            code="delete_main_prompt_without_regions",
            param="settings.delete_main_prompt",
        )
    global_prompt = plan.global_prompt
    if settings.replace_global_prompt is not None:
        global_prompt = settings.replace_global_prompt
    return plan.model_copy(update={"regions": regions, "global_prompt": global_prompt})


class RegionEditPipeline:
    """Region-aware editing with FLUX.1 Kontext or Qwen-Image-Edit (one backbone per instance)."""

    def __init__(
        self,
        backbone: Backbone,
        pipe: Any,
        *,
        device: str,
        defaults: BackboneDefaults | None = None,
        mask_cache: MaskPlanCache | None = None,
    ) -> None:
        """Wrap a loaded stock diffusers pipeline; installs the region-attention processors on its transformer."""
        self.backbone = backbone
        self.device = device
        self.defaults = defaults or BACKBONE_DEFAULTS[backbone]
        self.mask_cache = mask_cache or MaskPlanCache()
        self._adapter = _ADAPTERS[backbone](pipe, device=device, mask_cache=self.mask_cache)

    @classmethod
    def from_pretrained(
        cls,
        backbone: Backbone,
        model: str | Path,
        *,
        device: str = "cuda",
        dtype: torch.dtype = torch.bfloat16,
        local_files_only: bool = False,
    ) -> RegionEditPipeline:
        """Load `model` (a hub id or a local diffusers directory) for `backbone` on `device`."""
        if backbone is Backbone.FLUX_KONTEXT:
            from replan_common.tiny.flux_kontext import load_flux_kontext_pipeline as load
        else:
            from replan_common.tiny.qwen_image_edit import load_qwen_image_edit_pipeline as load
        pipe = load(model, device=device, dtype=dtype, local_files_only=local_files_only)
        return cls(backbone, pipe, device=device)

    @classmethod
    def tiny(cls, backbone: Backbone, *, seed: int = 0, device: str = "cpu") -> RegionEditPipeline:
        """The CPU `tiny` preset: random weights (edits are noise), 128² working area, 4 steps by default."""
        if backbone is Backbone.FLUX_KONTEXT:
            from replan_common.tiny.flux_kontext import build_tiny_flux_kontext_pipeline as build
        else:
            from replan_common.tiny.qwen_image_edit import build_tiny_qwen_image_edit_pipeline as build
        pipe = build(seed).to(device)
        return cls(backbone, pipe, device=device, defaults=TINY_DEFAULTS[backbone])

    @property
    def diffusers_pipeline(self) -> Any:
        """The wrapped stock diffusers pipeline (its transformer carries our processors)."""
        return self._adapter.pipe

    def compile(self, **kwargs: Any) -> None:
        """`torch.compile` the transformer in place (processors are stateless: no recompiles per request)."""
        self._adapter.pipe.transformer.compile(**kwargs)

    def resolve_settings(self, settings: EditSettings) -> EditSettings:
        """`settings` with every unset knob filled with this backbone's (or preset's) default."""
        return resolve_settings(settings, self.backbone, self.defaults)

    def working_size(self, size: Size, settings: EditSettings) -> Size:
        """The resolution an image of `size` is edited at under (resolved or not) `settings`."""
        return working_size(self.backbone, size, self.resolve_settings(settings).max_area or self.defaults.max_area)

    def edit(
        self,
        image: Image.Image,
        plan: RegionPlan,
        settings: EditSettings,
        *,
        on_step: StepCallback | None = None,
        should_stop: StopCheck | None = None,
    ) -> EditResult:
        """Edit `image` (any size) by `plan` (boxes in its pixels).

        Args:
            on_step: called after each denoising step as `on_step(done, total)`, `done` from 1 to `total`.
            should_stop: polled before denoising and between steps; when it returns True the edit raises
                `EditCancelled`.

        Raises:
            InvalidRegion: a box is degenerate or (mostly) outside the image (`param` names it).
            InvalidRules: a custom rule label or value is malformed.
            BadRequest: the settings name another backbone.
            EditCancelled: `should_stop()` returned True.
        """
        timings: dict[str, float] = {}
        start = time.perf_counter()
        resolved = self.resolve_settings(settings)
        with timed(timings, "validate_ms"):
            rgb = image.convert("RGB")
            original = Size(*rgb.size)
            applied = apply_plan_options(plan, original, resolved)
            working = working_size(self.backbone, original, resolved.max_area or self.defaults.max_area)
        prepared = PreparedEdit(image=rgb, plan=applied, settings=resolved, working=working)
        with torch.no_grad():
            result = self._adapter.run(prepared, on_step=on_step, should_stop=should_stop, timings=timings)
        with timed(timings, "resize_ms"):
            if result.size != rgb.size:
                result = result.resize(rgb.size, Image.Resampling.LANCZOS)
        timings["total_ms"] = (time.perf_counter() - start) * 1000.0
        logger.debug("edit %s regions at %sx%s: %s", len(applied.regions), working.width, working.height, timings)
        return EditResult(image=result, plan=applied, settings=resolved, timings_ms=timings)
