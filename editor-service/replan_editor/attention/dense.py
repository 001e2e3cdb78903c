"""The `dense` kernel: SDPA with the materialised `[S, S]` boolean mask. The correctness oracle.

O(S²) mask memory (about 100 MB at Kontext 1024² shapes) and a masked SDPA path, so it is slow; it is
here to define the function the other kernels must compute. Queries with no allowed key get zeros.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.options import KernelOptions


def dense_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan, options: KernelOptions | None = None
) -> torch.Tensor:
    """Region attention of `q, k, v: [B, H, S, D]` with the dense mask of `plan`."""
    if plan.is_full:
        return F.scaled_dot_product_attention(q, k, v)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.dense_mask(q.device))
    if plan.has_empty_rows:  # backends differ on fully masked rows (zeros or NaN); define them as zeros
        out = out.masked_fill(plan.empty_rows(q.device)[:, None], 0.0)
    return out
