"""The `flex` kernel: FlexAttention with a BlockMask, as the original RePlan runs it.

Tokens stay in raster (sequence) order. The `mask_mod` reads three captured tensors — a query-class id
and a key-class id per token and the class × class allowed matrix, padded to a power-of-two size — so a
request with new boxes reuses the compiled kernel: same code, same tensor shapes, new values. The
BlockMask is built once per mask plan and device and cached in the plan. Compiled by default on CUDA
(`torch.compile(flex_attention)`, created on first use, never at import); eager elsewhere.

Unlike the original, the BlockMask is not made by `create_block_mask` (which evaluates `mask_mod` on all
S² pairs and, compiled, took minutes of ptxas time at S = 8832 on an H200 with static shapes): each
128-token tile's class content decides exactly whether a tile pair is empty, full or partial, with two
small matrix products, so building one takes well under a millisecond and never compiles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.options import KernelOptions

#: The allowed matrix is padded to a power of two >= this, so the class count rarely changes shapes.
MIN_CLASS_BUCKET = 16
#: FlexAttention tile size (query and key).
BLOCK_SIZE = 128


def _bucket(n: int) -> int:
    size = MIN_CLASS_BUCKET
    while size < n:
        size *= 2
    return size


def _class_tensors(
    plan: MaskPlan, device: torch.device, *, padded_to: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class ids per token (padded with class 0 so tile padding indexes in bounds) and the padded matrix."""
    size = _bucket(max(plan.num_query_classes, plan.num_key_classes))
    allowed = torch.zeros(size, size, dtype=torch.bool)
    allowed[: plan.num_query_classes, : plan.num_key_classes] = plan.class_allowed
    query_class = torch.zeros(padded_to, dtype=torch.int32)
    key_class = torch.zeros(padded_to, dtype=torch.int32)
    query_class[: plan.seq_len] = plan.query_class
    key_class[: plan.seq_len] = plan.key_class
    return query_class.to(device), key_class.to(device), allowed.to(device)


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

    compiled: Callable[..., torch.Tensor] = torch.compile(flex_attention, dynamic=False)
    return compiled


def _tile_classes(classes: torch.Tensor, count: int, tiles: int) -> torch.Tensor:
    """`[tiles, count]` float: 1 where a class has a token in a 128-token tile."""
    presence = torch.zeros(tiles, count)
    tile_of_token = torch.arange(classes.numel()) // BLOCK_SIZE
    presence[tile_of_token, classes] = 1.0
    return presence


def _ordered_blocks(selected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """FlexAttention's block lists: per query tile the count and the indices (selected ones first)."""
    counts = selected.sum(dim=1, dtype=torch.int32)
    order = torch.argsort((~selected).to(torch.int8), dim=1, stable=True).to(torch.int32)
    return counts[None, None], order[None, None]


def build_block_mask(plan: MaskPlan, device: torch.device) -> object:
    """The plan's BlockMask, from tile class content: exact, no S² mask evaluation, no compilation."""
    from torch.nn.attention.flex_attention import BlockMask

    tiles = -(-plan.seq_len // BLOCK_SIZE)
    allowed = plan.class_allowed.float()
    q_tiles = _tile_classes(plan.query_class, plan.num_query_classes, tiles)
    k_tiles = _tile_classes(plan.key_class, plan.num_key_classes, tiles)
    some = (q_tiles @ allowed @ k_tiles.T) > 0
    all_allowed = (q_tiles @ (1.0 - allowed) @ k_tiles.T) == 0
    if plan.seq_len % BLOCK_SIZE:  # the last tile pairs hold padding: let mask_mod and the length check see them
        all_allowed[-1, :] = False
        all_allowed[:, -1] = False
    full = some & all_allowed
    partial = some & ~all_allowed
    kv_num, kv_index = _ordered_blocks(partial)
    full_num, full_index = _ordered_blocks(full)
    mask_mod = class_mask_mod(*_class_tensors(plan, device, padded_to=tiles * BLOCK_SIZE))
    return BlockMask.from_kv_blocks(
        kv_num.to(device),
        kv_index.to(device),
        full_num.to(device),
        full_index.to(device),
        BLOCK_SIZE=BLOCK_SIZE,
        mask_mod=mask_mod,
        seq_lengths=(plan.seq_len, plan.seq_len),
    )


def block_mask_for(plan: MaskPlan, device: torch.device) -> object:
    """The plan's BlockMask on `device` (B and H broadcast), built once and cached in the plan."""
    return plan.cached(("flex_block_mask", str(device)), lambda: build_block_mask(plan, device))


def flex_attention_kernel(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan, options: KernelOptions | None = None
) -> torch.Tensor:
    """Region attention of `q, k, v: [B, H, S, D]` with FlexAttention and the plan's BlockMask."""
    from torch.nn.attention.flex_attention import flex_attention

    compile = options.flex_compile if options and options.flex_compile is not None else q.device.type == "cuda"
    block_mask = block_mask_for(plan, q.device)
    run: Callable[..., torch.Tensor] = _compiled_flex() if compile else flex_attention  # type: ignore[assignment]
    out: torch.Tensor = run(q, k, v, block_mask=block_mask)
    return out
