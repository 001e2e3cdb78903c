"""The Qwen-Image-Edit adapter: a region edit through a stock `QwenImageEditPipeline`.

The joint sequence is `[text | noise latents | image latents]`, as for Kontext. A plan with regions passes
the joint text (main prompt with its image span, then the hints; see `qwen_text`) through `prompt_embeds`
and the region mask through `attention_kwargs`; the negative prompt is left to the pipeline, so the
true-CFG unconditional pass is the stock one and runs unmasked (its sequence length differs from the
plan's; when the lengths happen to coincide the negative text gets one masked padding token so they don't).

`QwenImageEditPipeline` sizes its condition image with a module-level `calculate_dimensions(1024 * 1024,
ratio)`, whatever the requested output size. For a `max_area` other than 1024² — the CPU `tiny` preset — the
adapter swaps that function for one with the requested area while its call runs, under a process-wide lock
(`condition_area`); it is the only way to keep the noise and image-latent grids equal without forking the
pipeline. At the default area nothing is patched.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image

from replan_common.errors import Unprocessable
from replan_common.protocol import Backbone
from replan_editor.pipelines.adapter import BackboneAdapter, PreparedEdit, timed
from replan_editor.pipelines.qwen_processor import QwenRegionAttnProcessor
from replan_editor.pipelines.qwen_text import encode_qwen_text, template_tokens
from replan_editor.pipelines.region_mask import plan_text_order
from replan_editor.pipelines.steps import StepCallback, StopCheck

_STOCK_CONDITION_AREA = 1024 * 1024
_CONDITION_AREA_LOCK = threading.Lock()


@contextmanager
def condition_area(max_area: int) -> Iterator[None]:
    """Make `QwenImageEditPipeline` size its condition image for `max_area` pixels while the block runs.

    Holds a lock for the whole block, so two edits with different areas never interleave.
    """
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as module

    with _CONDITION_AREA_LOCK:
        original = module.calculate_dimensions
        if max_area != _STOCK_CONDITION_AREA:
            module.calculate_dimensions = lambda _area, ratio: original(max_area, ratio)
        try:
            yield
        finally:
            module.calculate_dimensions = original


def condition_size(image: Image.Image, max_area: int) -> tuple[int, int]:
    """`(width, height)` the pipeline resizes the condition image to (multiples of 32)."""
    from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import calculate_dimensions

    width, height, _ = calculate_dimensions(max_area, image.width / image.height)
    return int(width), int(height)


class QwenImageEditAdapter(BackboneAdapter):
    backbone = Backbone.QWEN_IMAGE_EDIT
    has_image_prompt = True

    def make_processor(self) -> QwenRegionAttnProcessor:
        return QwenRegionAttnProcessor()

    def run(
        self,
        edit: PreparedEdit,
        *,
        on_step: StepCallback | None,
        should_stop: StopCheck | None,
        timings: dict[str, float],
    ) -> Image.Image:
        pipe, settings, working = self.pipe, edit.settings, edit.working
        if (settings.steps or 0) < 2 and pipe.scheduler.config.get("shift_terminal"):
            raise Unprocessable(
                "Qwen-Image's scheduler stretches sigmas to a terminal value, which needs at least 2 steps "
                "(1 step divides by zero and gives a NaN image)",
                code="too_few_steps",
                param="settings.steps",
            )
        max_area = settings.max_area or _STOCK_CONDITION_AREA
        cond_width, cond_height = condition_size(edit.image, max_area)
        if (cond_width, cond_height) != (working.width, working.height):
            raise RuntimeError(
                f"Qwen condition image {cond_width}x{cond_height} != working size {working.width}x{working.height}; "
                "the noise and image-latent token grids must match"
            )
        call: dict[str, Any] = {
            "image": edit.image,
            "height": working.height,
            "width": working.width,
            "num_inference_steps": settings.steps,
            "generator": self.generator(settings.seed),
            "output_type": "pil",
        }
        true_cfg = (settings.true_cfg_scale or 1.0) > 1.0
        negative = settings.negative_prompt if settings.negative_prompt is not None else " "
        if true_cfg:
            call["true_cfg_scale"] = settings.true_cfg_scale
            call["negative_prompt"] = negative

        phases = None
        if edit.plan.is_empty:
            call["prompt"] = edit.plan.global_prompt
        else:
            prompt_image = pipe.image_processor.resize(edit.image, working.height, working.width)
            with timed(timings, "encode_ms"):
                text = encode_qwen_text(
                    pipe,
                    prompt_image,
                    edit.plan.global_prompt,
                    [r.hint for r in edit.plan.regions],
                    delete_main_prompt=settings.delete_main_prompt,
                    device=self.device,
                )
                if true_cfg and template_tokens(pipe, negative, prompt_image) == text.prompt_embeds.shape[1]:
                    del call["negative_prompt"]
                    call.update(self._padded_negative(negative, prompt_image))
            with timed(timings, "mask_plan_ms"):
                order, image_prompt = plan_text_order(text.main_tokens, text.hint_tokens, text.image_prompt)
                _, phases = self.region_setup(
                    edit,
                    main_tokens=text.main_tokens,
                    hint_tokens=text.hint_tokens,
                    image_prompt=image_prompt,
                    text_order=torch.tensor(order, device=self.device),
                )
            call["prompt_embeds"] = text.prompt_embeds
            call["prompt_embeds_mask"] = torch.ones(text.prompt_embeds.shape[:2], dtype=torch.long, device=self.device)

        hook, attention_kwargs = self.step_hook(edit, phases, on_step, should_stop)
        if attention_kwargs is not None:
            call["attention_kwargs"] = attention_kwargs
        hook.check_stop(0)
        with timed(timings, "denoise_ms"), condition_area(max_area):
            return pipe(callback_on_step_end=hook, **call).images[0]

    def _padded_negative(self, negative: str, prompt_image: Image.Image) -> dict[str, torch.Tensor]:
        """The negative prompt's embeddings plus one masked zero token, so its length differs from the plan's."""
        embeds, _ = self.pipe.encode_prompt(prompt=negative, image=prompt_image, device=self.device)
        padded = torch.cat([embeds, embeds.new_zeros(embeds.shape[0], 1, embeds.shape[2])], dim=1)
        mask = torch.ones(padded.shape[:2], dtype=torch.long, device=self.device)
        mask[:, -1] = 0
        return {"negative_prompt_embeds": padded, "negative_prompt_embeds_mask": mask}
