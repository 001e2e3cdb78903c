"""The tiny FLUX.1 Kontext and Qwen-Image-Edit pipelines build, denoise 2 steps on CPU and reload bit-exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from replan_common.tiny.flux_kontext import (
    build_tiny_flux_kontext_pipeline,
    load_flux_kontext_pipeline,
    save_tiny_flux_kontext_pipeline,
)
from replan_common.tiny.qwen_image_edit import (
    build_tiny_qwen_image_edit_pipeline,
    load_qwen_image_edit_pipeline,
    save_tiny_qwen_image_edit_pipeline,
)

SIZE = 128


@pytest.fixture(scope="module")
def image() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))


@pytest.fixture
def small_qwen_condition_area(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """QwenImageEditPipeline resizes the condition image to ~1024² unconditionally; keep tests small."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit as module

    original = module.calculate_dimensions
    monkeypatch.setattr(module, "calculate_dimensions", lambda _area, ratio: original(SIZE * SIZE, ratio))
    yield


def _kontext(pipe: Any, image: Image.Image) -> np.ndarray:
    return pipe(
        image=image,
        prompt="make the cup blue",
        height=SIZE,
        width=SIZE,
        max_area=SIZE * SIZE,
        _auto_resize=False,
        num_inference_steps=2,
        guidance_scale=2.5,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images


def _qwen(pipe: Any, image: Image.Image) -> np.ndarray:
    return pipe(
        image=image,
        prompt="make the cup blue",
        negative_prompt=" ",
        true_cfg_scale=4.0,
        height=SIZE,
        width=SIZE,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images


def _all_eval(pipe: Any) -> bool:
    return all(not m.training for m in pipe.components.values() if isinstance(m, torch.nn.Module))


@pytest.mark.parametrize(
    ("build", "save", "load", "run"),
    [
        pytest.param(
            build_tiny_flux_kontext_pipeline,
            save_tiny_flux_kontext_pipeline,
            load_flux_kontext_pipeline,
            _kontext,
            id="flux-kontext",
        ),
        pytest.param(
            build_tiny_qwen_image_edit_pipeline,
            save_tiny_qwen_image_edit_pipeline,
            load_qwen_image_edit_pipeline,
            _qwen,
            id="qwen-image-edit",
        ),
    ],
)
@pytest.mark.usefixtures("small_qwen_condition_area")
def test_builds_runs_and_reloads(
    build: Callable[..., Any],
    save: Callable[..., Path],
    load: Callable[..., Any],
    run: Callable[[Any, Image.Image], np.ndarray],
    image: Image.Image,
    tmp_path: Path,
) -> None:
    pipe = build(seed=0)
    assert _all_eval(pipe)
    assert pipe.vae_scale_factor == 8  # one packed token per 16x16 pixels, as the real models
    first = run(pipe, image)
    assert first.shape == (1, SIZE, SIZE, 3)
    assert np.isfinite(first).all()
    assert np.array_equal(first, run(pipe, image)), "same seed must give the same image"

    save(tmp_path, seed=0)
    reloaded = load(tmp_path, local_files_only=True)
    assert _all_eval(reloaded)
    assert np.array_equal(first, run(reloaded, image)), "a reloaded pipeline must match the built one bit for bit"


def test_kontext_packs_16_latent_channels() -> None:
    pipe = build_tiny_flux_kontext_pipeline()
    assert pipe.vae.config.latent_channels * 4 == pipe.transformer.config.in_channels == 64


def test_qwen_edit_template_prefix_matches_the_tiny_tokenizer() -> None:
    pipe = build_tiny_qwen_image_edit_pipeline()
    prefix_ids = pipe.tokenizer(pipe.prompt_template_encode.format("x")).input_ids
    start = pipe.prompt_template_encode_start_idx
    assert prefix_ids[start] == pipe.tokenizer.convert_tokens_to_ids("<|vision_start|>")
