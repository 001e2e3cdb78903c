"""The `fast` kernel: region attention as a few unmasked attention calls stitched by log-sum-exp.

The schedule (`block_schedule`) cuts the allowed set into fully-allowed blocks; this module runs them and
assembles the output: the big block's output is the buffer, single-cover rows are copied in, multi-cover
rows merged exactly, rows with no allowed key zeroed. Every call is an unmasked fused kernel (cuDNN on
CUDA, returning its log-sum-exp), so no mask is ever evaluated. Blocks with few query rows and many keys
(hint rows against the latents) are split along the keys into a batch of chunks (flash-decoding style)
so a handful of query tiles still fills the GPU. Attention is permutation-equivariant once RoPE is
applied, so gathering tokens by index and scattering results back is exact.

Layout advice for callers: with the text ordered `[hints | main]` (`TextLayout(hints_first=True)`) the
default rules give views only (no copies) for the big block; `[main | hints]` needs one gather of the main
prompt and latent keys per call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from replan_editor.attention.block_schedule import CPU_COSTS, GPU_COSTS, BlockSchedule, TokenSet, build_block_schedule
from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.options import KernelOptions
from replan_editor.attention.partial_attention import attention_with_lse

#: Split a block's keys into chunks when it has at most this many query rows (GPU only) ...
SPLIT_KV_MAX_ROWS = 512
#: ... into chunks of at least this many keys.
SPLIT_KV_MIN_CHUNK = 1024


def schedule_for(plan: MaskPlan, device: torch.device) -> BlockSchedule:
    """The plan's block schedule on `device`, built and moved once per plan."""
    costs = GPU_COSTS if device.type == "cuda" else CPU_COSTS
    cpu_schedule = plan.cached(("fast_schedule", device.type), lambda: build_block_schedule(plan, costs))
    return plan.cached(("fast_schedule", str(device)), lambda: cpu_schedule.to(device))


def _select(x: torch.Tensor, tokens: TokenSet) -> torch.Tensor:
    if tokens.index is None:
        return x[:, :, tokens.start : tokens.stop]
    return x.index_select(2, tokens.index)


def _chunked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunks: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of few queries over many keys, the keys split into `chunks` batch entries, merged."""
    batch, heads, rows, dim = q.shape
    length = k.shape[2] // chunks

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(2, (chunks, length)).transpose(1, 2).reshape(batch * chunks, heads, length, dim)

    q_rep = q.unsqueeze(1).expand(batch, chunks, heads, rows, dim).reshape(batch * chunks, heads, rows, dim)
    out, lse = attention_with_lse(q_rep, split(k), split(v))
    out = out.view(batch, chunks, heads, rows, dim)
    lse = lse.view(batch, chunks, heads, rows)
    total = torch.logsumexp(lse, dim=1)
    weights = torch.exp(lse - total.unsqueeze(1)).unsqueeze(-1)
    return (out.float() * weights).sum(dim=1).to(q.dtype), total


def _kv_chunks(q_rows: int, k_rows: int, device: torch.device) -> int:
    if device.type != "cuda" or q_rows > SPLIT_KV_MAX_ROWS:
        return 1
    chunks = min(16, k_rows // SPLIT_KV_MIN_CHUNK)
    while chunks > 1 and k_rows % chunks:
        chunks -= 1
    return max(chunks, 1)


def fast_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan, options: KernelOptions | None = None
) -> torch.Tensor:
    """Region attention of `q, k, v: [B, H, S, D]` under `plan`, as fully-allowed unmasked blocks."""
    if plan.is_full:
        return F.scaled_dot_product_attention(q, k, v)
    return run_schedule(q, k, v, schedule_for(plan, q.device))


def run_schedule(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, schedule: BlockSchedule) -> torch.Tensor:
    """Run a block schedule (already on q's device) and assemble the output `[B, H, S, D]`."""
    outs: list[torch.Tensor] = []
    lses: list[torch.Tensor] = []
    for block in schedule.blocks:
        qb, kb, vb = _select(q, block.queries), _select(k, block.keys), _select(v, block.keys)
        chunks = _kv_chunks(qb.shape[2], kb.shape[2], q.device)
        out, lse = _chunked_attention(qb, kb, vb, chunks) if chunks > 1 else attention_with_lse(qb, kb, vb)
        outs.append(out)
        lses.append(lse)

    # Read every merge input before the base buffer is written to.
    merged: torch.Tensor | None = None
    if schedule.merge_rows.numel():
        batch, heads, _, dim = q.shape
        slots = schedule.merge_rows.numel()
        peak = torch.full((batch, heads, slots), float("-inf"), device=q.device)
        for part in schedule.merge_parts:
            lse = lses[part.block].index_select(2, part.src_pos)
            peak.scatter_reduce_(2, part.dst.expand(batch, heads, -1), lse, reduce="amax")
        acc = torch.zeros(batch, heads, slots, dim, device=q.device, dtype=torch.float32)
        norm = torch.zeros(batch, heads, slots, device=q.device, dtype=torch.float32)
        for part in schedule.merge_parts:
            weight = torch.exp(lses[part.block].index_select(2, part.src_pos) - peak.index_select(2, part.dst))
            acc.index_add_(2, part.dst, outs[part.block].index_select(2, part.src_pos).float() * weight.unsqueeze(-1))
            norm.index_add_(2, part.dst, weight)
        merged = (acc / norm.unsqueeze(-1)).to(q.dtype)

    out = outs[schedule.base] if schedule.base is not None else torch.zeros_like(q)
    for copy in schedule.copies:
        out.index_copy_(2, copy.dst, outs[copy.block].index_select(2, copy.src_pos))
    if merged is not None:
        out.index_copy_(2, schedule.merge_rows, merged)
    if schedule.zero_rows.numel():
        out.index_fill_(2, schedule.zero_rows, 0.0)
    return out
