"""With no regions the region-edit pipeline is the plain diffusers pipeline, bit for bit (both backbones);
with regions but every rule cell allowed it equals the plain pipeline given the same joint text (to tolerance).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from replan_common.geometry import Size
from replan_common.plan import RegionPlan
from replan_common.protocol import Backbone, EditSettings, HintTokens
from replan_common.tiny.flux_kontext import build_tiny_flux_kontext_pipeline
from replan_common.tiny.qwen_image_edit import build_tiny_qwen_image_edit_pipeline
from replan_editor.attention.rules import default_rules
from replan_editor.pipelines import RegionEditPipeline
from replan_editor.pipelines.flux_text import encode_flux_text
from replan_editor.pipelines.qwen_text import encode_qwen_text


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def small_qwen_condition_area(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain Qwen pipeline sizes its condition image for 1024²; give it the tiny preset's area."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as module

    from replan_editor.pipelines.defaults import TINY_MAX_AREA

    original = module.calculate_dimensions
    monkeypatch.setattr(module, "calculate_dimensions", lambda _area, ratio: original(TINY_MAX_AREA, ratio))


def _plain_edit(
    backbone: Backbone, image: Image.Image, settings: EditSettings, working: Size, **text: Any
) -> Image.Image:
    """The stock diffusers pipeline (fresh, same seed and weights as the tiny preset), resized back."""
    generator = torch.Generator().manual_seed(settings.seed)
    if backbone is Backbone.FLUX_KONTEXT:
        pipe = build_tiny_flux_kontext_pipeline(seed=0)
        out = pipe(
            image=pipe.image_processor.resize(image, working.height, working.width),
            height=working.height,
            width=working.width,
            max_area=working.area,
            _auto_resize=False,
            num_inference_steps=settings.steps,
            guidance_scale=settings.guidance_scale,
            generator=generator,
            **text,
        ).images[0]
    else:
        pipe = build_tiny_qwen_image_edit_pipeline(seed=0)
        out = pipe(
            image=image,
            height=working.height,
            width=working.width,
            num_inference_steps=settings.steps,
            true_cfg_scale=settings.true_cfg_scale,
            negative_prompt=settings.negative_prompt,
            generator=generator,
            **text,
        ).images[0]
    return out.resize(image.size, Image.Resampling.LANCZOS)


@pytest.mark.usefixtures("small_qwen_condition_area")
def test_empty_plan_equals_the_plain_pipeline_bit_for_bit(
    backbone: Backbone, region_pipeline: RegionEditPipeline, image: Image.Image, empty_plan: RegionPlan
) -> None:
    settings = region_pipeline.resolve_settings(EditSettings(seed=7))
    working = region_pipeline.working_size(Size(*image.size), settings)
    ours = region_pipeline.edit(image, empty_plan, settings).image
    plain = _plain_edit(backbone, image, settings, working, prompt=empty_plan.global_prompt)
    assert ours.size == image.size
    assert np.array_equal(np.asarray(ours), np.asarray(plain))
    assert _png(ours) == _png(plain)


def _all_allowed(backbone: Backbone, num_regions: int) -> dict[str, bool]:
    rules = default_rules(num_regions, has_image_prompt=backbone is Backbone.QWEN_IMAGE_EDIT)
    return dict.fromkeys(rules.to_mapping(), True)


@pytest.mark.usefixtures("small_qwen_condition_area")
def test_all_true_rules_equal_the_plain_pipeline_with_the_same_text(
    backbone: Backbone,
    region_pipeline: RegionEditPipeline,
    image: Image.Image,
    two_region_plan: RegionPlan,
    attention_calls: list[Any],
) -> None:
    settings = region_pipeline.resolve_settings(
        EditSettings(
            custom_rules=_all_allowed(backbone, len(two_region_plan.regions)),
            rule_switch_ratio=1.0,
            expand_value=0.15,
            hint_tokens=HintTokens.TRIMMED,
        )
    )
    ours = region_pipeline.edit(image, two_region_plan, settings).image
    assert attention_calls and all(plan.is_full for plan in attention_calls), "the region processors must run"

    working = region_pipeline.working_size(Size(*image.size), settings)
    hints = [r.hint for r in two_region_plan.regions]
    stock = region_pipeline.diffusers_pipeline
    if backbone is Backbone.FLUX_KONTEXT:
        text = encode_flux_text(stock, two_region_plan.global_prompt, hints, mode=HintTokens.TRIMMED, device="cpu")
        embeds = {"prompt_embeds": text.prompt_embeds, "pooled_prompt_embeds": text.pooled_prompt_embeds}
    else:
        prompt_image = stock.image_processor.resize(image, working.height, working.width)
        qwen = encode_qwen_text(stock, prompt_image, two_region_plan.global_prompt, hints, device="cpu")
        embeds = {"prompt_embeds": qwen.prompt_embeds}
    plain = _plain_edit(backbone, image, settings, working, **embeds)
    diff = np.abs(np.asarray(ours, dtype=np.int16) - np.asarray(plain, dtype=np.int16))
    assert diff.max() <= 2, f"max pixel difference {diff.max()}"
