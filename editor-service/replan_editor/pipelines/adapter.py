"""What the two backbone adapters share: the prepared edit, the adapter interface and small helpers.

A `PreparedEdit` is an edit after validation: the RGB input image, the plan as applied (boxes clipped, the
global prompt resolved), fully resolved settings and the working resolution. An adapter wraps one stock
diffusers pipeline, installs its region-attention processor once (it behaves as the stock processor when a
call carries no region mask) and runs a prepared edit through the pipeline's public arguments.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image

from replan_common.geometry import Size
from replan_common.plan import RegionPlan
from replan_common.protocol import AttentionKernel, Backbone, EditSettings
from replan_editor.attention.layout import TokenLayout, layout_from_plan
from replan_editor.attention.mask_plan import MaskPlanCache
from replan_editor.pipelines.region_mask import REGION_MASK_KWARG, RulePhases
from replan_editor.pipelines.rule_setup import rule_schedule
from replan_editor.pipelines.steps import StepCallback, StepHook, StopCheck


@dataclass(frozen=True)
class PreparedEdit:
    """A validated edit, ready for an adapter."""

    image: Image.Image
    plan: RegionPlan
    settings: EditSettings
    working: Size

    @property
    def original(self) -> Size:
        return Size(*self.image.size)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Add the wall time of the block to `timings[name]` in milliseconds."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - start) * 1000.0


class BackboneAdapter(ABC):
    """One diffusers pipeline plus its region-attention processor."""

    backbone: ClassVar[Backbone]
    has_image_prompt: ClassVar[bool]

    def __init__(self, pipe: Any, *, device: str, mask_cache: MaskPlanCache) -> None:
        self.pipe = pipe
        self.device = device
        self.mask_cache = mask_cache
        pipe.transformer.set_attn_processor(self.make_processor())

    @abstractmethod
    def make_processor(self) -> Any:
        """A fresh (stateless) region-attention processor for every attention module of the transformer."""

    @abstractmethod
    def run(
        self,
        edit: PreparedEdit,
        *,
        on_step: StepCallback | None,
        should_stop: StopCheck | None,
        timings: dict[str, float],
    ) -> Image.Image:
        """Run the edit; returns the image at the working resolution."""

    def generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(seed)

    def region_setup(
        self,
        edit: PreparedEdit,
        *,
        main_tokens: int,
        hint_tokens: tuple[int, ...],
        image_prompt: tuple[int, int] | None = None,
        text_order: torch.Tensor | None = None,
    ) -> tuple[TokenLayout, RulePhases]:
        """Token layout (`[hints | main | latents]`, `image_prompt` in plan order) and per-phase mask plans of
        a plan with regions; `text_order`: the stream position of each plan text position, when the stream
        is in another order (see `RegionMask`)."""
        settings = edit.settings
        layout = layout_from_plan(
            edit.plan,
            edit.original,
            edit.working,
            main_tokens=main_tokens,
            hint_tokens=hint_tokens,
            image_prompt=image_prompt,
            expand_value=settings.expand_value or 0.0,
            expand_mode=settings.expand_mode,
            hints_first=True,
        )
        schedule = rule_schedule(settings, len(edit.plan.regions), has_image_prompt=self.has_image_prompt)
        kernel = settings.kernel or AttentionKernel.AUTO
        return layout, RulePhases(layout, schedule, kernel, self.mask_cache, text_order=text_order)

    @staticmethod
    def step_hook(
        edit: PreparedEdit,
        phases: RulePhases | None,
        on_step: StepCallback | None,
        should_stop: StopCheck | None,
    ) -> tuple[StepHook, dict[str, Any] | None]:
        """The step callback and, with regions, the attention-kwargs dict it updates (step 0's mask set)."""
        kwargs = None if phases is None else {REGION_MASK_KWARG: phases.for_step(0)}
        total = edit.settings.steps or 0
        return StepHook(total, attention_kwargs=kwargs, phases=phases, on_step=on_step, should_stop=should_stop), kwargs
