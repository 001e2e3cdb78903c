"""The FLUX (Kontext) attention processor with region attention, for double- and single-stream blocks.

Subclasses diffusers' `FluxAttnProcessor` and keeps its steps — `_get_qkv_projections`, the q/k norms, the
`[text, image]` join, RoPE through `apply_rotary_emb(..., sequence_dim=1)`, the split and the output
projections — and only replaces the attention call with the engine's `region_attention` when the call
carries a `RegionMask` for its sequence. Without one (or for a sequence the plan does not describe) it is
the stock processor, bit for bit. `region_mask` is declared in `__call__` because `FluxAttention.forward`
drops keyword arguments the processor's signature does not name. Stateless: safe under `torch.compile`.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import (
    FluxAttention,
    FluxAttnProcessor,
    _get_qkv_projections,
)

from replan_editor.pipelines.engine import attend
from replan_editor.pipelines.region_mask import RegionMask


class FluxRegionAttnProcessor(FluxAttnProcessor):
    """`FluxAttnProcessor` whose attention obeys a region mask plan when one is passed."""

    def __call__(
        self,
        attn: FluxAttention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        region_mask: RegionMask | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        text_len = 0 if encoder_hidden_states is None else encoder_hidden_states.shape[1]
        if region_mask is None or not region_mask.applies_to(text_len + hidden_states.shape[1]):
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if attention_mask is not None:
            raise ValueError("region attention replaces attention_mask; pass one or the other")
        if region_mask.text_order is not None:  # single-stream blocks join text and latents before the processor
            raise ValueError("Kontext builds its text stream in plan order; text_order is for Qwen-Image")

        query, key, value, encoder_query, encoder_key, encoder_value = _get_qkv_projections(
            attn, hidden_states, encoder_hidden_states
        )
        query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))
        key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
        value = value.unflatten(-1, (-1, attn.head_dim))
        if attn.added_kv_proj_dim is not None and encoder_hidden_states is not None:
            encoder_query = attn.norm_added_q(encoder_query.unflatten(-1, (-1, attn.head_dim)))
            encoder_key = attn.norm_added_k(encoder_key.unflatten(-1, (-1, attn.head_dim)))
            encoder_value = encoder_value.unflatten(-1, (-1, attn.head_dim))
            query = torch.cat([encoder_query, query], dim=1)
            key = torch.cat([encoder_key, key], dim=1)
            value = torch.cat([encoder_value, value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)

        out = attend(query, key, value, region_mask)  # [B, S, H, D]
        out = out.flatten(2, 3).to(query.dtype)

        if encoder_hidden_states is None:
            return out
        encoder_out, out = out.split_with_sizes([text_len, out.shape[1] - text_len], dim=1)
        out = attn.to_out[1](attn.to_out[0](out.contiguous()))
        encoder_out = attn.to_add_out(encoder_out.contiguous())
        return out, encoder_out
