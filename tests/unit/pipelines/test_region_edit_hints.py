"""Hint encoding: Flux hints padded to 512 T5 tokens or trimmed to a 16-token bucket (the kept tokens equal the
padded encoding's), placed before the main prompt; Qwen hints are encoded with the image in context and lose
their vision tokens."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

from replan_common.geometry import Size, token_grid
from replan_common.plan import RegionPlan
from replan_common.protocol import EditSettings, HintTokens
from replan_editor.pipelines import RegionEditPipeline
from replan_editor.pipelines.flux_text import HINT_TOKEN_BUCKET, T5_MAX_TOKENS, encode_flux_text, trimmed_length
from replan_editor.pipelines.qwen_text import encode_qwen_text, template_tokens


@pytest.mark.parametrize(("real", "trimmed"), [(1, 16), (16, 16), (17, 32), (65, 80), (511, 512), (600, 512)])
def test_trimmed_length_rounds_up_to_the_bucket(real: int, trimmed: int) -> None:
    assert trimmed_length(real) == trimmed


def test_flux_padded_and_trimmed_hints(kontext_pipeline: RegionEditPipeline) -> None:
    pipe = kontext_pipeline.diffusers_pipeline
    hints = ["a small potted plant", "a red cup on a wooden desk"]
    padded = encode_flux_text(pipe, "global", hints, mode=HintTokens.PADDED, device="cpu")
    trimmed = encode_flux_text(pipe, "global", hints, mode=HintTokens.TRIMMED, device="cpu")
    assert padded.hint_tokens == (T5_MAX_TOKENS, T5_MAX_TOKENS)
    assert trimmed.hint_tokens == (HINT_TOKEN_BUCKET, HINT_TOKEN_BUCKET)
    assert padded.main_tokens == trimmed.main_tokens == T5_MAX_TOKENS
    assert padded.prompt_embeds.shape[1] == 3 * T5_MAX_TOKENS
    assert trimmed.prompt_embeds.shape[1] == T5_MAX_TOKENS + 2 * HINT_TOKEN_BUCKET
    # Hints first, then the main prompt: the same main segment (the stock encoding) and pooled vector; each
    # trimmed hint is the head of its padded encoding.
    main, _, _ = pipe.encode_prompt(prompt="global", prompt_2=None, device="cpu", max_sequence_length=T5_MAX_TOKENS)
    assert torch.equal(padded.prompt_embeds[:, -T5_MAX_TOKENS:], main)
    assert torch.equal(trimmed.prompt_embeds[:, -T5_MAX_TOKENS:], main)
    assert torch.equal(padded.pooled_prompt_embeds, trimmed.pooled_prompt_embeds)
    for i in range(2):
        start_padded = T5_MAX_TOKENS * i
        start_trimmed = HINT_TOKEN_BUCKET * i
        assert torch.equal(
            padded.prompt_embeds[:, start_padded : start_padded + HINT_TOKEN_BUCKET],
            trimmed.prompt_embeds[:, start_trimmed : start_trimmed + HINT_TOKEN_BUCKET],
        )


def test_flux_pooled_vector_comes_from_the_global_prompt_only(kontext_pipeline: RegionEditPipeline) -> None:
    pipe = kontext_pipeline.diffusers_pipeline
    one = encode_flux_text(pipe, "global", ["a"], mode=HintTokens.TRIMMED, device="cpu")
    other = encode_flux_text(pipe, "global", ["something else entirely"], mode=HintTokens.TRIMMED, device="cpu")
    _, pooled, _ = pipe.encode_prompt(prompt="global", prompt_2=None, device="cpu")
    assert torch.equal(one.pooled_prompt_embeds, other.pooled_prompt_embeds)
    assert torch.equal(one.pooled_prompt_embeds, pooled)


@pytest.mark.parametrize("mode", list(HintTokens))
def test_flux_sequence_length_follows_the_hint_mode(
    kontext_pipeline: RegionEditPipeline,
    image: Image.Image,
    two_region_plan: RegionPlan,
    attention_calls: list[Any],
    mode: HintTokens,
) -> None:
    settings = EditSettings(hint_tokens=mode, steps=1)
    kontext_pipeline.edit(image, two_region_plan, settings)
    grid = token_grid(kontext_pipeline.working_size(Size(*image.size), settings))
    hint = T5_MAX_TOKENS if mode is HintTokens.PADDED else HINT_TOKEN_BUCKET
    assert attention_calls[0].seq_len == T5_MAX_TOKENS + 2 * hint + 2 * grid.area


def test_qwen_hints_are_image_contextualised_text_without_vision_tokens(
    qwen_pipeline: RegionEditPipeline, image: Image.Image
) -> None:
    pipe = qwen_pipeline.diffusers_pipeline
    prompt_image = pipe.image_processor.resize(image, 96, 128)
    hints = ["a small potted plant", "a red cup"]
    text = encode_qwen_text(pipe, prompt_image, "global prompt", hints, device="cpu")
    start, stop = text.image_prompt
    vision_span = stop - start
    assert start == 0  # the template's system prefix is dropped; the image comes first
    assert text.main_tokens == template_tokens(pipe, "global prompt", prompt_image)
    for hint, length in zip(hints, text.hint_tokens, strict=True):
        assert length == template_tokens(pipe, hint, prompt_image) - vision_span
    assert text.prompt_embeds.shape[1] == text.main_tokens + sum(text.hint_tokens)
    # The main prompt's embedding is the pipeline's own.
    stock, _ = pipe.encode_prompt(prompt="global prompt", image=prompt_image, device="cpu")
    assert torch.allclose(text.prompt_embeds[:, : text.main_tokens], stock, atol=1e-5)
