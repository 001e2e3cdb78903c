"""A tiny random-weight FLUX.1 Kontext pipeline (the real diffusers classes), built from code in a blink.

Owns `build_tiny_flux_kontext_pipeline`, `save_tiny_flux_kontext_pipeline` and `load_flux_kontext_pipeline`.
The VAE has four blocks, so `vae_scale_factor` is 8 and one packed latent token covers 16×16 pixels, the same
geometry as the real model; the transformer has 16 latent channels packed 2×2 into 64 inputs, also as FLUX.1.
Text encoders (CLIP for the pooled vector, T5 for the sequence) are tiny and use locally trained tokenizers.
Every module is put in eval mode: config-built models start in train mode and T5 dropout breaks determinism.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from replan_common.tiny.modules import diffusers_dtype_kwarg, eval_all, own_cpu_storage
from replan_common.tiny.tokenizers import build_clip_tokenizer, build_t5_tokenizer

#: Width of the tiny text encoders (T5 d_model = transformer joint_attention_dim; CLIP hidden = pooled dim).
_TEXT_DIM = 32


def build_tiny_flux_kontext_pipeline(seed: int = 0) -> Any:
    """A `FluxKontextPipeline` with tiny random modules seeded by `seed`, every module in eval mode."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxKontextPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer = build_clip_tokenizer(model_max_length=77)
    t5_tokenizer = build_t5_tokenizer(model_max_length=512)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_TEXT_DIM,
            pooled_projection_dim=_TEXT_DIM,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        )
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 8, 16, 16),
            layers_per_block=1,
            latent_channels=16,
            norm_num_groups=4,
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(clip_tokenizer),
                hidden_size=_TEXT_DIM,
                intermediate_size=2 * _TEXT_DIM,
                num_hidden_layers=2,
                num_attention_heads=2,
                max_position_embeddings=77,
                projection_dim=_TEXT_DIM,
                bos_token_id=clip_tokenizer.bos_token_id,
                eos_token_id=clip_tokenizer.eos_token_id,
                pad_token_id=clip_tokenizer.pad_token_id,
            )
        )
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=len(t5_tokenizer),
                d_model=_TEXT_DIM,
                d_kv=16,
                d_ff=2 * _TEXT_DIM,
                num_layers=2,
                num_heads=2,
                relative_attention_num_buckets=8,
                dropout_rate=0.0,
                decoder_start_token_id=0,
            )
        )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=4096,
        max_shift=1.15,
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
    )
    pipe = FluxKontextPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=clip_tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
        image_encoder=None,
        feature_extractor=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return eval_all(pipe)


def save_tiny_flux_kontext_pipeline(directory: str | os.PathLike[str], seed: int = 0) -> Path:
    """Build the tiny Kontext pipeline and save it as a diffusers pipeline directory."""
    path = Path(directory)
    build_tiny_flux_kontext_pipeline(seed).save_pretrained(path)
    return path


def load_flux_kontext_pipeline(
    model: str | os.PathLike[str],
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    local_files_only: bool = False,
) -> Any:
    """A `FluxKontextPipeline` from a hub id or local directory (tiny or real), every module in eval mode."""
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(model, local_files_only=local_files_only, **diffusers_dtype_kwarg(dtype))
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            own_cpu_storage(component)
    return eval_all(pipe)
