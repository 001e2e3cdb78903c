"""The Qwen-Image attention processor with region attention (dual-stream blocks).

Subclasses diffusers' `QwenDoubleStreamAttnProcessor2_0` and keeps its steps — separate image (`to_q/k/v`)
and text (`add_*_proj`) projections, the four q/k norms, RoPE through `apply_rotary_emb_qwen`, the
`[text, image]` join, the split and the output projections — replacing only the attention call with the
engine's `region_attention` when the call carries a `RegionMask` for its sequence. The true-CFG
unconditional pass encodes the negative prompt, so its sequence has another length than the plan's and it
runs through the stock processor, unmasked, as in the original. Without a mask this is the stock processor,
bit for bit. Stateless: safe under `torch.compile`.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_qwenimage import (
    QwenDoubleStreamAttnProcessor2_0,
    apply_rotary_emb_qwen,
)

from replan_editor.pipelines.engine import attend
from replan_editor.pipelines.region_mask import RegionMask


class QwenRegionAttnProcessor(QwenDoubleStreamAttnProcessor2_0):
    """`QwenDoubleStreamAttnProcessor2_0` whose attention obeys a region mask plan when one is passed."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.FloatTensor,
        encoder_hidden_states: torch.FloatTensor = None,
        encoder_hidden_states_mask: torch.FloatTensor = None,
        attention_mask: torch.FloatTensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
        region_mask: RegionMask | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stock = (
            region_mask is None
            or encoder_hidden_states is None
            or not region_mask.applies_to(encoder_hidden_states.shape[1] + hidden_states.shape[1])
        )
        if stock:
            return super().__call__(
                attn, hidden_states, encoder_hidden_states, encoder_hidden_states_mask, attention_mask, image_rotary_emb
            )
        if attention_mask is not None or encoder_hidden_states_mask is not None:
            raise ValueError("region attention needs unpadded text: no attention_mask / encoder_hidden_states_mask")

        head_dim = attn.inner_dim // attn.heads
        img_query = attn.to_q(hidden_states).unflatten(-1, (-1, head_dim))
        img_key = attn.to_k(hidden_states).unflatten(-1, (-1, head_dim))
        img_value = attn.to_v(hidden_states).unflatten(-1, (-1, head_dim))
        txt_query = attn.add_q_proj(encoder_hidden_states).unflatten(-1, (-1, head_dim))
        txt_key = attn.add_k_proj(encoder_hidden_states).unflatten(-1, (-1, head_dim))
        txt_value = attn.add_v_proj(encoder_hidden_states).unflatten(-1, (-1, head_dim))
        if attn.norm_q is not None:
            img_query = attn.norm_q(img_query)
        if attn.norm_k is not None:
            img_key = attn.norm_k(img_key)
        if attn.norm_added_q is not None:
            txt_query = attn.norm_added_q(txt_query)
        if attn.norm_added_k is not None:
            txt_key = attn.norm_added_k(txt_key)
        if image_rotary_emb is not None:
            img_freqs, txt_freqs = image_rotary_emb
            img_query = apply_rotary_emb_qwen(img_query, img_freqs, use_real=False)
            img_key = apply_rotary_emb_qwen(img_key, img_freqs, use_real=False)
            txt_query = apply_rotary_emb_qwen(txt_query, txt_freqs, use_real=False)
            txt_key = apply_rotary_emb_qwen(txt_key, txt_freqs, use_real=False)

        query = region_mask.join(txt_query, img_query)  # plan order, RoPE already applied
        key = region_mask.join(txt_key, img_key)
        value = region_mask.join(txt_value, img_value)
        out = attend(query, key, value, region_mask).flatten(2, 3).to(query.dtype)  # [B, S, H*D]

        txt_out, img_out = region_mask.split(out)
        img_out = attn.to_out[0](img_out.contiguous())
        if len(attn.to_out) > 1:
            img_out = attn.to_out[1](img_out)
        txt_out = attn.to_add_out(txt_out.contiguous())
        return img_out, txt_out
