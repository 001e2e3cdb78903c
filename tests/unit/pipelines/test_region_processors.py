"""The attention processors: without a region mask they are the stock diffusers processors, bit for bit, at
the transformer level; and Kontext's joint sequence is `[text | noise latents | image latents]`."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from replan_common.plan import RegionPlan
from replan_common.protocol import EditSettings
from replan_common.tiny.flux_kontext import build_tiny_flux_kontext_pipeline
from replan_common.tiny.qwen_image_edit import build_tiny_qwen_image_edit_pipeline
from replan_editor.pipelines import FluxRegionAttnProcessor, QwenRegionAttnProcessor, RegionEditPipeline


def _flux_inputs(generator: torch.Generator, text: int = 20, grid: int = 8) -> dict[str, Any]:
    n = grid * grid
    ids = torch.zeros(2 * n, 3)
    ids[n:, 0] = 1
    ids[:, 1] = (torch.arange(2 * n) % n) // grid
    ids[:, 2] = torch.arange(2 * n) % grid
    return {
        "hidden_states": torch.randn(1, 2 * n, 64, generator=generator),
        "encoder_hidden_states": torch.randn(1, text, 32, generator=generator),
        "pooled_projections": torch.randn(1, 32, generator=generator),
        "timestep": torch.tensor([0.5]),
        "img_ids": ids,
        "txt_ids": torch.zeros(text, 3),
        "guidance": torch.tensor([2.5]),
        "return_dict": False,
    }


def test_flux_processor_without_a_mask_is_the_stock_processor() -> None:
    stock = build_tiny_flux_kontext_pipeline(seed=0).transformer
    ours = build_tiny_flux_kontext_pipeline(seed=0).transformer
    ours.set_attn_processor(FluxRegionAttnProcessor())
    inputs = _flux_inputs(torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(stock(**inputs)[0], ours(**inputs)[0])


def test_qwen_processor_without_a_mask_is_the_stock_processor() -> None:
    stock = build_tiny_qwen_image_edit_pipeline(seed=0).transformer
    ours = build_tiny_qwen_image_edit_pipeline(seed=0).transformer
    ours.set_attn_processor(QwenRegionAttnProcessor())
    g = torch.Generator().manual_seed(0)
    inputs = {
        "hidden_states": torch.randn(1, 2 * 16, 64, generator=g),
        "encoder_hidden_states": torch.randn(1, 12, 32, generator=g),
        "timestep": torch.tensor([0.5]),
        "img_shapes": [[(1, 4, 4), (1, 4, 4)]],
        "return_dict": False,
    }
    with torch.no_grad():
        assert torch.equal(stock(**inputs)[0], ours(**inputs)[0])


def test_kontext_sequence_is_noise_then_image_latents(
    kontext_pipeline: RegionEditPipeline, image: Image.Image, two_region_plan: RegionPlan
) -> None:
    """diffusers 0.42 passes `cat([latents, image_latents])`: image-latent position ids carry a 1 first."""
    seen: list[torch.Tensor] = []
    transformer = kontext_pipeline.diffusers_pipeline.transformer
    handle = transformer.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.append(kwargs["img_ids"]), with_kwargs=True
    )
    try:
        kontext_pipeline.edit(image, two_region_plan, EditSettings(steps=1))
    finally:
        handle.remove()
    ids = seen[0]
    n = ids.shape[0] // 2
    assert torch.all(ids[:n, 0] == 0) and torch.all(ids[n:, 0] == 1)
    assert torch.equal(ids[:n, 1:], ids[n:, 1:]), "both copies on the same grid, in the same raster order"


def _plans(
    grid: int, main: int, hints: tuple[int, ...], image_prompt: tuple[int, int] | None = None
) -> tuple[Any, Any]:
    """The same regions as a layout in stream order (`[main | hints]`) and one in plan order (hints first; a
    Qwen image prompt last in the main prompt), with default rules."""
    from replan_common.geometry import Size, TokenSpan
    from replan_editor.attention import MaskPlan, TextLayout, TokenLayout, default_rules
    from replan_editor.pipelines.region_mask import plan_text_order

    spans = (TokenSpan(0, 3, 1, 4), TokenSpan(2, grid, 3, grid))
    rules = default_rules(2, has_image_prompt=image_prompt is not None)
    plan_prompt = None if image_prompt is None else plan_text_order(main, hints, image_prompt)[1]
    texts = (TextLayout(main, hints, image_prompt), TextLayout(main, hints, plan_prompt, hints_first=True))
    return tuple(MaskPlan(TokenLayout(text, Size(grid, grid), spans), rules) for text in texts)  # type: ignore[return-value]


def test_kontext_text_order_is_free_hints_first_equals_main_first() -> None:
    """Every Kontext text token has position 0, so `[hints | main]` with a hints-first plan is the same function
    as `[main | hints]` with a main-first plan (what lets the editor build its stream hints first)."""
    from replan_editor.pipelines import RegionMask

    transformer = build_tiny_flux_kontext_pipeline(seed=0).transformer
    transformer.set_attn_processor(FluxRegionAttnProcessor())
    main, hints = 12, (3, 5)
    inputs = _flux_inputs(torch.Generator().manual_seed(1), text=main + sum(hints))
    main_first, hints_first = _plans(8, main, hints)
    text = inputs["encoder_hidden_states"]
    reordered = {**inputs, "encoder_hidden_states": torch.cat([text[:, main:], text[:, :main]], dim=1)}
    with torch.no_grad():
        expected = transformer(**inputs, joint_attention_kwargs={"region_mask": RegionMask(main_first, "dense")})[0]
        got = transformer(**reordered, joint_attention_kwargs={"region_mask": RegionMask(hints_first, "fast")})[0]
        plain = transformer(**inputs)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected, plain, atol=1e-3)  # the regions do change the output


def test_qwen_reorders_its_text_after_rope_so_plan_order_equals_stream_order() -> None:
    """Qwen text tokens have sequential RoPE positions: its stream stays `[main | hints]` and the processor joins
    the text in plan order after RoPE, which must equal attending in the stream's order with a stream-order plan."""
    from replan_editor.pipelines import RegionMask
    from replan_editor.pipelines.region_mask import plan_text_order

    transformer = build_tiny_qwen_image_edit_pipeline(seed=0).transformer
    transformer.set_attn_processor(QwenRegionAttnProcessor())
    main, hints = 8, (2, 3)
    g = torch.Generator().manual_seed(2)
    inputs = {
        "hidden_states": torch.randn(1, 2 * 16, 64, generator=g),
        "encoder_hidden_states": torch.randn(1, main + sum(hints), 32, generator=g),
        "timestep": torch.tensor([0.5]),
        "img_shapes": [[(1, 4, 4), (1, 4, 4)]],
        "return_dict": False,
    }
    main_first, hints_first = _plans(4, main, hints, image_prompt=(1, 5))
    order = torch.tensor(plan_text_order(main, hints, (1, 5))[0])
    with torch.no_grad():
        expected = transformer(**inputs, attention_kwargs={"region_mask": RegionMask(main_first, "dense")})[0]
        got = transformer(**inputs, attention_kwargs={"region_mask": RegionMask(hints_first, "fast", order)})[0]
        plain = transformer(**inputs)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(expected, plain, atol=1e-3)
