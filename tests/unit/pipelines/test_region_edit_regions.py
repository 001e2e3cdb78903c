"""Region edits: they change the output, every kernel agrees, and bad input fails with a typed error."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from replan_common.errors import BadRequest, InvalidRegion, InvalidRules, Unprocessable
from replan_common.plan import Region, RegionPlan
from replan_common.protocol import AttentionKernel, Backbone, EditSettings
from replan_editor.pipelines import EditCancelled, RegionEditPipeline


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_regions_change_the_output(
    region_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan
) -> None:
    settings = EditSettings(seed=1)
    guided = region_pipeline.edit(image, two_region_plan, settings)
    plain = region_pipeline.edit(image, RegionPlan(global_prompt=two_region_plan.global_prompt), settings)
    assert guided.image.size == image.size
    assert not np.array_equal(_pixels(guided.image), _pixels(plain.image))
    assert {"validate_ms", "encode_ms", "mask_plan_ms", "denoise_ms", "total_ms"} <= set(guided.timings_ms)


def test_every_kernel_gives_the_same_image(
    region_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan, attention_calls: list[Any]
) -> None:
    results = {}
    for kernel in (AttentionKernel.DENSE, AttentionKernel.FLEX, AttentionKernel.FAST):
        settings = EditSettings(kernel=kernel, rule_switch_ratio=0.5, steps=2)
        results[kernel] = _pixels(region_pipeline.edit(image, two_region_plan, settings).image)
    assert attention_calls and not any(plan.is_full for plan in attention_calls), "the masks must restrict"
    reference = results[AttentionKernel.DENSE]
    for kernel, pixels in results.items():
        assert np.abs(pixels - reference).max() <= 2, kernel


def test_box_outside_the_image_is_rejected_with_its_param(
    region_pipeline: RegionEditPipeline, image: Image.Image
) -> None:
    plan = RegionPlan(
        global_prompt="x",
        regions=(Region(bbox=(0, 0, 20, 20), hint="a"), Region(bbox=(400, 300, 500, 400), hint="b")),
    )
    with pytest.raises(InvalidRegion) as raised:
        region_pipeline.edit(image, plan, EditSettings())
    assert raised.value.param == "regions[1].bbox"
    assert raised.value.code == "bbox_outside_image"


def test_overhanging_box_is_clipped_and_the_applied_plan_says_so(
    region_pipeline: RegionEditPipeline, image: Image.Image
) -> None:
    plan = RegionPlan(global_prompt="orig", regions=(Region(bbox=(100, 80, 170, 130), hint="a"),))
    result = region_pipeline.edit(image, plan, EditSettings(replace_global_prompt="keep the rest"))
    assert result.plan.regions[0].bbox == (100, 80, 150, 120)
    assert result.plan.global_prompt == "keep the rest"


def test_unknown_rule_label_is_invalid_rules(
    region_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan
) -> None:
    with pytest.raises(InvalidRules) as raised:
        region_pipeline.edit(image, two_region_plan, EditSettings(custom_rules={"N.BG|N.B7": False}))
    assert raised.value.code == "unknown_rule_label"


def test_delete_main_prompt_needs_a_region(region_pipeline: RegionEditPipeline, image: Image.Image) -> None:
    with pytest.raises(Unprocessable) as raised:
        region_pipeline.edit(image, RegionPlan(global_prompt="x"), EditSettings(delete_main_prompt=True))
    assert raised.value.param == "settings.delete_main_prompt"


def test_delete_main_prompt_drops_the_global_text(
    backbone: Backbone,
    region_pipeline: RegionEditPipeline,
    image: Image.Image,
    two_region_plan: RegionPlan,
    attention_calls: list[Any],
) -> None:
    region_pipeline.edit(image, two_region_plan, EditSettings(delete_main_prompt=True, steps=2))
    text = attention_calls[0].layout.text
    if backbone is Backbone.FLUX_KONTEXT:
        assert text.main_tokens == 0
    else:  # only the image span of the main prompt is kept
        assert text.image_prompt == (0, text.main_tokens)


def test_settings_for_another_backbone_are_rejected(
    backbone: Backbone, region_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan
) -> None:
    other = next(b for b in Backbone if b is not backbone)
    with pytest.raises(BadRequest) as raised:
        region_pipeline.edit(image, two_region_plan, EditSettings(backbone=other))
    assert raised.value.param == "settings.backbone"


def test_progress_and_cancellation_between_steps(
    region_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan
) -> None:
    steps: list[tuple[int, int]] = []
    region_pipeline.edit(image, two_region_plan, EditSettings(steps=3), on_step=lambda i, n: steps.append((i, n)))
    assert steps == [(1, 3), (2, 3), (3, 3)]

    seen: list[int] = []
    with pytest.raises(EditCancelled) as raised:
        region_pipeline.edit(
            image,
            two_region_plan,
            EditSettings(steps=4),
            on_step=lambda i, n: seen.append(i),
            should_stop=lambda: len(seen) >= 2,
        )
    assert (raised.value.done, raised.value.total) == (2, 4)
    assert seen == [1, 2]


def test_cancelled_before_denoising(region_pipeline: RegionEditPipeline, image: Image.Image) -> None:
    with pytest.raises(EditCancelled) as raised:
        region_pipeline.edit(image, RegionPlan(global_prompt="x"), EditSettings(), should_stop=lambda: True)
    assert raised.value.done == 0


def test_qwen_needs_two_steps(
    qwen_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan
) -> None:
    """Qwen-Image's scheduler (shift_terminal) divides by zero with one step: a NaN image, not an edit."""
    with pytest.raises(Unprocessable) as raised:
        qwen_pipeline.edit(image, two_region_plan, EditSettings(steps=1))
    assert raised.value.param == "settings.steps"
