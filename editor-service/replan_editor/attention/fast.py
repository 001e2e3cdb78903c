"""The `fast` kernel: region attention as a few unmasked attention calls stitched by log-sum-exp.

The schedule (`block_schedule`) turns the mask plan into a bulk call that needs no mask plus a small
remainder; this module runs them and assembles the output: the bulk's output is the buffer, rows of
other blocks are copied in or merged exactly by log-sum-exp with a running total, rows with no allowed
key zeroed. The bulk is a plain fused kernel (cuDNN on CUDA, returning its
log-sum-exp), so no mask is evaluated over the bulk of the pairs. On CUDA the small calls go to a side
stream, launched before the bulk, so their few long-running tiles (e.g. a hundred hint rows against all
latents) fill the SMs the bulk leaves idle instead of running after it. Row gathers and scatters index
the sequence dimension in the tensors' storage order (diffusers hands over `[B, S, H, D]` storage), so
each moved row is one contiguous chunk. Attention is permutation-equivariant once RoPE is applied, so
gathering tokens by index and scattering results back is exact.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from replan_editor.attention.block_schedule import (
    CPU_COSTS,
    GPU_COSTS,
    Block,
    BlockSchedule,
    TokenSet,
    build_block_schedule,
)
from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.options import KernelOptions
from replan_editor.attention.partial_attention import attention_with_lse


def schedule_for(plan: MaskPlan, device: torch.device) -> BlockSchedule:
    """The plan's block schedule on `device`, built and moved once per plan."""
    costs = GPU_COSTS if device.type == "cuda" else CPU_COSTS
    cpu_schedule = plan.cached(("fast_schedule", costs), lambda: build_block_schedule(plan, costs))
    return plan.cached(("fast_schedule_on", str(device)), lambda: cpu_schedule.to(device))


@functools.cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per device, created on first use (never at import)."""
    return torch.cuda.Stream(device)  # type: ignore[no-untyped-call]


def _bias(block: Block, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    """The additive mask of a block (0 allowed, -inf not), built on the device from the mask's factors."""
    if block.mask_table is None:
        return None
    table = block.mask_table.to(device)
    bias = torch.zeros(table.shape, device=device, dtype=dtype).masked_fill_(~table, -torch.inf)
    return bias if block.mask_rows is None else bias.index_select(0, block.mask_rows.to(device))


def _biases(schedule: BlockSchedule, device: torch.device, dtype: torch.dtype) -> list[torch.Tensor | None]:
    return [_bias(b, device, dtype) for b in schedule.blocks]


def _seq_major(x: torch.Tensor) -> bool:
    """Whether `x: [B, H, S, D]` is stored sequence-major (`[B, S, H, D]` storage)."""
    return x.shape[1] == 1 or x.stride(2) >= x.stride(1)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """`x[:, :, index]` for `x: [B, H, S, D]`, copying whole rows in storage order."""
    if _seq_major(x):
        return x.transpose(1, 2).index_select(1, index).transpose(1, 2)
    return x.index_select(2, index)


def scatter_rows_(x: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> None:
    """In place `x[:, :, index] = rows` for `x, rows: [B, H, *, D]`."""
    if _seq_major(x):
        x.transpose(1, 2).index_copy_(1, index, rows.transpose(1, 2))
    else:
        x.index_copy_(2, index, rows)


def _select(x: torch.Tensor, tokens: TokenSet) -> torch.Tensor:
    if tokens.index is None:
        return x[:, :, tokens.start : tokens.stop]
    return gather_rows(x, tokens.index)


def _run_block(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: Block, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    return attention_with_lse(_select(q, block.queries), _select(k, block.keys), _select(v, block.keys), bias=bias)


def merge_rows_(
    out: torch.Tensor,
    lse: torch.Tensor,
    rows: torch.Tensor,
    part: torch.Tensor,
    part_lse: torch.Tensor,
    src: torch.Tensor,
) -> None:
    """In place: `out[:, :, rows]`, `lse[:, :, rows]` ← their exact merge with `part[:, :, src]`."""
    a, la = gather_rows(out, rows).float(), lse.index_select(2, rows)
    b, lb = gather_rows(part, src).float(), part_lse.index_select(2, src)
    total = torch.logaddexp(la, lb)
    merged = a * torch.exp(la - total).unsqueeze(-1) + b * torch.exp(lb - total).unsqueeze(-1)
    scatter_rows_(out, rows, merged.to(out.dtype))
    lse.index_copy_(2, rows, total)


def run_schedule(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    schedule: BlockSchedule,
    biases: list[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """Run a block schedule (already on q's device) and assemble the output `[B, H, S, D]`."""
    biases = biases if biases is not None else _biases(schedule, q.device, q.dtype)
    results: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(schedule.blocks)
    others = [i for i in range(len(schedule.blocks)) if i != schedule.base]
    side = _side_stream(q.device) if q.is_cuda and others and schedule.base is not None else None
    if side is not None:
        main = torch.cuda.current_stream(q.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            for i in others:
                results[i] = _run_block(q, k, v, schedule.blocks[i], biases[i])
        for i in others:
            for tensor in results[i]:  # type: ignore[union-attr]
                tensor.record_stream(main)
    for i, block in enumerate(schedule.blocks):
        if results[i] is None:
            results[i] = _run_block(q, k, v, block, biases[i])
    if side is not None:
        torch.cuda.current_stream(q.device).wait_stream(side)
    done: list[tuple[torch.Tensor, torch.Tensor]] = results  # type: ignore[assignment]

    if schedule.base is not None:
        out, lse = done[schedule.base]
    else:
        batch, heads, seq_len, _ = q.shape
        out = torch.zeros_like(q)
        lse = torch.full((batch, heads, seq_len), -torch.inf, device=q.device)
    for placement in schedule.placements:
        part, part_lse = done[placement.block]
        if placement.copy_dst.numel():
            scatter_rows_(out, placement.copy_dst, gather_rows(part, placement.copy_src))
            lse.index_copy_(2, placement.copy_dst, part_lse.index_select(2, placement.copy_src))
        if placement.merge_dst.numel():
            merge_rows_(out, lse, placement.merge_dst, part, part_lse, placement.merge_src)
    if schedule.zero_rows.numel():
        out.index_fill_(2, schedule.zero_rows, 0.0)
    return out


def fast_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan, options: KernelOptions | None = None
) -> torch.Tensor:
    """Region attention of `q, k, v: [B, H, S, D]` under `plan`, as a bulk unmasked call plus small blocks."""
    if plan.is_full:
        return F.scaled_dot_product_attention(q, k, v)
    schedule = schedule_for(plan, q.device)
    biases = plan.cached(("fast_biases", str(q.device), q.dtype), lambda: _biases(schedule, q.device, q.dtype))
    return run_schedule(q, k, v, schedule, biases)
