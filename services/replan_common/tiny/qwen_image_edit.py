"""A tiny random-weight Qwen-Image-Edit pipeline (the real diffusers classes), built from code in about a second.

Owns `build_tiny_qwen_image_edit_pipeline`, `save_tiny_qwen_image_edit_pipeline` and
`load_qwen_image_edit_pipeline`. The VAE downsamples ×8 (three spatial downsamplings), so one packed token
covers 16×16 pixels as in the real model; latents have 16 channels packed 2×2 into 64 transformer inputs.
The text encoder is the tiny Qwen2.5-VL of `qwen_vl` (local tokenizer, PIL image processor, no torchvision).

Two things the real checkpoint does not need: the pipeline drops `prompt_template_encode_start_idx` leading
tokens (64, the real tokenizer's system-prompt length); under the tiny tokenizer that prefix has another length,
so it is measured and saved in `replan_tiny.json`, which the loader applies. And diffusers cannot load the
processor without torchvision, so the loader always builds it itself (`load_qwen_vl_processor`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from replan_common.tiny.modules import diffusers_dtype_kwarg, eval_all, own_cpu_storage
from replan_common.tiny.qwen_vl import ImageOnlyQwen2VLProcessor, build_tiny_qwen_vl, load_qwen_vl_processor

_TINY_MARKER = "replan_tiny.json"
_TEXT_DIM = 32


def prompt_template_prefix_length(pipe: Any) -> int:
    """Tokens of the pipeline's edit template before the image (what the pipeline should drop)."""
    prefix = pipe.prompt_template_encode.split("<|vision_start|>")[0]
    return len(pipe.tokenizer(prefix).input_ids)


def build_tiny_qwen_image_edit_pipeline(seed: int = 0) -> Any:
    """A `QwenImageEditPipeline` with tiny random modules seeded by `seed`, every module in eval mode."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )

    text_encoder, processor = build_tiny_qwen_vl(
        seed, hidden_size=_TEXT_DIM, num_layers=2, processor_cls=ImageOnlyQwen2VLProcessor
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_TEXT_DIM,
            guidance_embeds=False,
            axes_dims_rope=(4, 6, 6),
        )
        vae = AutoencoderKLQwenImage(
            base_dim=8,
            z_dim=16,
            dim_mult=[1, 2, 2, 2],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * 16,
            latents_std=[1.0] * 16,
        )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=8192,
        max_shift=0.9,
        num_train_timesteps=1000,
        shift=1.0,
        shift_terminal=0.02,
        use_dynamic_shifting=True,
        time_shift_type="exponential",
    )
    pipe = QwenImageEditPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=processor.tokenizer,
        processor=processor,
        transformer=transformer,
    )
    pipe.prompt_template_encode_start_idx = prompt_template_prefix_length(pipe)
    pipe.set_progress_bar_config(disable=True)
    return eval_all(pipe)


def save_tiny_qwen_image_edit_pipeline(directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Build the tiny pipeline and save it as a diffusers pipeline directory (plus `replan_tiny.json`)."""
    path = Path(directory)
    pipe = build_tiny_qwen_image_edit_pipeline(seed)
    pipe.save_pretrained(path)
    # Record the processor as the real checkpoint does; our class is only a torchvision-free stand-in.
    index_file = path / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2), encoding="utf-8")
    marker = {"prompt_template_encode_start_idx": pipe.prompt_template_encode_start_idx}
    (path / _TINY_MARKER).write_text(json.dumps(marker), encoding="utf-8")
    return path


def load_qwen_image_edit_pipeline(
    model: str | os.PathLike[str],
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
) -> Any:
    """A `QwenImageEditPipeline` from a hub id or local directory (tiny or real), every module in eval mode."""
    from diffusers import QwenImageEditPipeline

    processor = load_qwen_vl_processor(
        model, subfolder="processor", local_files_only=local_files_only, cls=ImageOnlyQwen2VLProcessor
    )
    pipe = QwenImageEditPipeline.from_pretrained(
        model, processor=processor, local_files_only=local_files_only, **diffusers_dtype_kwarg(dtype)
    )
    marker = Path(model) / _TINY_MARKER
    if marker.is_file():
        settings = json.loads(marker.read_text(encoding="utf-8"))
        pipe.prompt_template_encode_start_idx = int(settings["prompt_template_encode_start_idx"])
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            own_cpu_storage(component)
    return eval_all(pipe)
