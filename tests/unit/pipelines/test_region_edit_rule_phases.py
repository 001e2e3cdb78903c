"""The rule phase switches at `int(ratio * steps)` (observed through the mask plan each attention call
uses); one plan per phase is shared by every layer and step; Qwen's true-CFG unconditional pass is unmasked."""

from __future__ import annotations

from typing import Any

import pytest
from PIL import Image

from replan_common.plan import RegionPlan
from replan_common.protocol import EditSettings
from replan_editor.pipelines import RegionEditPipeline


def _plans_per_step(region_pipeline: RegionEditPipeline, calls: list[Any], run: Any) -> list[list[Any]]:
    boundaries: list[int] = []
    run(on_step=lambda i, n: boundaries.append(len(calls)))
    starts = [0, *boundaries[:-1]]
    return [calls[a:b] for a, b in zip(starts, boundaries, strict=True)]


def _layers(region_pipeline: RegionEditPipeline) -> int:
    return len(region_pipeline.diffusers_pipeline.transformer.attn_processors)


@pytest.mark.parametrize(("ratio", "switch_at"), [(0.0, 0), (0.5, 2), (1.0, 4), (3.0, 3)])
def test_custom_rules_before_the_switch_default_after(
    region_pipeline: RegionEditPipeline,
    image: Image.Image,
    two_region_plan: RegionPlan,
    attention_calls: list[Any],
    ratio: float,
    switch_at: int,
) -> None:
    settings = EditSettings(steps=4, rule_switch_ratio=ratio)
    per_step = _plans_per_step(
        region_pipeline,
        attention_calls,
        lambda on_step: region_pipeline.edit(image, two_region_plan, settings, on_step=on_step),
    )
    assert len(per_step) == 4
    for step, plans in enumerate(per_step):
        # One masked call per attention layer: Qwen's unconditional (true-CFG) pass never reaches the engine.
        assert len(plans) == _layers(region_pipeline), step
        assert len({id(p) for p in plans}) == 1, "one plan per step, shared by every layer"
        expected = "locality" if step < switch_at else "default"
        assert plans[0].rules.name == expected, step


def test_mask_plans_are_reused_across_requests_with_the_same_boxes(
    region_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan, attention_calls: list[Any]
) -> None:
    settings = EditSettings(steps=2)
    region_pipeline.edit(image, two_region_plan, settings)
    first = attention_calls[0]
    attention_calls.clear()
    region_pipeline.edit(image, two_region_plan, settings.model_copy(update={"seed": 5}))
    assert attention_calls[0] is first


def test_qwen_unconditional_pass_runs_unmasked(
    qwen_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan
) -> None:
    seen: list[int] = []
    transformer = qwen_pipeline.diffusers_pipeline.transformer
    handle = transformer.register_forward_pre_hook(
        lambda _m, _args, kwargs: seen.append(kwargs["encoder_hidden_states"].shape[1]), with_kwargs=True
    )
    try:
        qwen_pipeline.edit(image, two_region_plan, EditSettings(steps=2))
    finally:
        handle.remove()
    assert len(seen) == 4 and seen[0] != seen[1], "a conditional and an unconditional pass of different lengths"


class _EqualsAnything:
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


def test_qwen_negative_of_colliding_length_gets_a_masked_pad(
    qwen_pipeline: RegionEditPipeline,
    image: Image.Image,
    two_region_plan: RegionPlan,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the negative prompt had the plan's text length, its pass would be masked; one padded token prevents it."""
    monkeypatch.setattr("replan_editor.pipelines.qwen_image_edit.template_tokens", lambda *_args: _EqualsAnything())
    seen: list[tuple[int, Any]] = []
    transformer = qwen_pipeline.diffusers_pipeline.transformer
    handle = transformer.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append((kw["encoder_hidden_states"].shape[1], kw["encoder_hidden_states_mask"])),
        with_kwargs=True,
    )
    try:
        qwen_pipeline.edit(image, two_region_plan, EditSettings(steps=2))
    finally:
        handle.remove()
    (_, cond_mask), (uncond_len, uncond_mask) = seen[:2]
    assert cond_mask is None
    assert uncond_mask is not None and uncond_mask.shape[1] == uncond_len
    assert uncond_mask[0, -1] == 0 and bool(uncond_mask[0, :-1].all())
