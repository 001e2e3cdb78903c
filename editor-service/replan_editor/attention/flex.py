"""The `flex` kernel: FlexAttention with a BlockMask, as the original RePlan runs it.

Tokens stay in raster (sequence) order. The `mask_mod` reads three captured tensors — a query-class id
and a key-class id per token and the class × class allowed matrix, padded to a power-of-two size — so a
request with new boxes reuses the compiled kernel: same code, same tensor shapes, new values. The
BlockMask is built once per mask plan and device and cached in the plan. Compiled by default on CUDA
(`torch.compile(flex_attention)`, created on first use, never at import); eager elsewhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.options import KernelOptions

#: The allowed matrix is padded to a power of two >= this, so the class count rarely changes shapes.
MIN_CLASS_BUCKET = 16


def _bucket(n: int) -> int:
    size = MIN_CLASS_BUCKET
    while size < n:
        size *= 2
    return size


def _class_tensors(plan: MaskPlan, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    size = _bucket(max(plan.num_query_classes, plan.num_key_classes))
    allowed = torch.zeros(size, size, dtype=torch.bool)
    allowed[: plan.num_query_classes, : plan.num_key_classes] = plan.class_allowed
    return (
        plan.query_class.to(device=device, dtype=torch.int32),
        plan.key_class.to(device=device, dtype=torch.int32),
        allowed.to(device),
    )


def class_mask_mod(
    query_class: torch.Tensor, key_class: torch.Tensor, allowed: torch.Tensor
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The one `mask_mod` shape: allowed[query_class[q], key_class[k]] (batch and head ignored)."""

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> torch.Tensor:
        return allowed[query_class[q_idx], key_class[kv_idx]]

    return mask_mod


@functools.cache
def _compiled_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)  # type: ignore[return-value]


def block_mask_for(plan: MaskPlan, device: torch.device, *, compile: bool) -> object:
    """The plan's BlockMask on `device` (B and H broadcast), built once and cached in the plan."""
    from torch.nn.attention.flex_attention import create_block_mask

    def build() -> object:
        mask_mod = class_mask_mod(*_class_tensors(plan, device))
        return create_block_mask(mask_mod, None, None, plan.seq_len, plan.seq_len, device=device, _compile=compile)

    return plan.cached(("flex_block_mask", str(device), compile), build)


def flex_attention_kernel(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan, options: KernelOptions | None = None
) -> torch.Tensor:
    """Region attention of `q, k, v: [B, H, S, D]` with FlexAttention and the plan's BlockMask."""
    from torch.nn.attention.flex_attention import flex_attention

    compile = options.flex_compile if options and options.flex_compile is not None else q.device.type == "cuda"
    block_mask = block_mask_for(plan, q.device, compile=compile)
    run = _compiled_flex() if compile else flex_attention
    return run(q, k, v, block_mask=block_mask)
