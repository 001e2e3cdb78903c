"""The one call from the pipelines into the region-attention engine, in the processors' tensor layout.

Diffusers processors hold q, k, v as `[B, S, H, D]`; the engine's `region_attention` takes `[B, H, S, D]`
(RoPE already applied). This module owns that transpose and nothing else, so the processors and the
pipelines depend on the engine through a single function.
"""

from __future__ import annotations

import torch

from replan_editor.attention.registry import region_attention
from replan_editor.pipelines.region_mask import RegionMask


def attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: RegionMask) -> torch.Tensor:
    """Region attention of `[B, S, H, D]` tensors under `mask`; returns `[B, S, H, D]`."""
    out = region_attention(
        query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), mask.plan, kernel=mask.kernel
    )
    return out.transpose(1, 2)
