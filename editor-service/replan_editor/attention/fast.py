"""The `fast` kernel: region attention as unmasked fused calls on views plus an exact residual, merged by LSE.

`fast_plan` cuts the mask plan into rects (unmasked calls on contiguous views: no mask is evaluated over the
bulk of the pairs, no row is gathered) and row groups (the few keys a row may see beyond its rect: a box's
hint, a hint's own tokens). This module runs the rects with the fused kernel that also returns the
log-sum-exp (cuDNN on CUDA) and the residual with one of two implementations of the same function:

- `triton` (CUDA): `fast_triton`'s kernels attend every row group to its keys and merge with the owner's
  partial in one pass (long key lists split across the GPU), and run the rects after the first on a side
  stream; this is what makes region attention cost about what the unmasked call costs (docs/performance.md).
- `torch` (CPU, or CUDA without Triton): per row group, gather, `attention_with_lse`, merge, scatter.

Attention is permutation-equivariant once RoPE is applied, so attending gathered rows to gathered keys and
writing the rows back is exact.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from replan_editor.attention.fast_plan import CPU_COSTS, GPU_COSTS, FastPlan, Rect, build_fast_plan
from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.options import KernelOptions
from replan_editor.attention.partial_attention import attention_with_lse, merge_partials

Partial = tuple[torch.Tensor, torch.Tensor]


def fast_plan_for(plan: MaskPlan, device: torch.device) -> FastPlan:
    """The plan's fast plan for `device`'s kind, built once per mask plan."""
    costs = GPU_COSTS if device.type == "cuda" else CPU_COSTS
    return plan.cached(("fast_plan", costs), lambda: build_fast_plan(plan, costs))


@functools.cache
def triton_available() -> bool:
    """Whether the Triton residual kernels can be imported (Triton installed)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def residual_backend(q: torch.Tensor, options: KernelOptions | None) -> str:
    """`triton` or `torch`: the option if given, else Triton on CUDA where it is installed."""
    chosen = options.fast_residual if options is not None else None
    if chosen is not None:
        return chosen
    return "triton" if q.is_cuda and triton_available() else "torch"


def rect_partials(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rects: tuple[Rect, ...]) -> list[Partial]:
    """Each rect's `(out, lse)` from one unmasked fused call on views of q, k, v."""
    return [attention_with_lse(q[:, :, r.q0 : r.q1], k[:, :, r.k0 : r.k1], v[:, :, r.k0 : r.k1]) for r in rects]


def output_buffer(q: torch.Tensor, fast: FastPlan, partials: list[Partial]) -> torch.Tensor:
    """The result buffer `[B, H, S, D]`: the first rect's output when it spans every row, else a fresh one
    stored sequence-major (`[B, S, H, D]`, as diffusers' processors consume it)."""
    if fast.out_from_first:
        return partials[0][0]
    batch, heads, seq_len, dim = q.shape
    return q.new_empty(batch, seq_len, heads, dim).transpose(1, 2)


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


def _device_groups(fast: FastPlan, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`(rows, keys)` of every row group as index tensors on `device`, moved once per plan."""

    def build() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.from_numpy(g.rows).to(device), torch.from_numpy(g.keys).to(device)) for g in fast.groups]

    return fast.cached(("groups_on", str(device)), build)


def zero_rows_(out: torch.Tensor, fast: FastPlan) -> None:
    """Zero the rows that may see no key (every kernel returns zeros there)."""
    if fast.zero_rows.size:
        zero = fast.cached(("zero_on", str(out.device)), lambda: torch.from_numpy(fast.zero_rows).to(out.device))
        out.index_fill_(2, zero, 0.0)


def run_torch(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fast: FastPlan) -> torch.Tensor:
    """The plan with the residual in plain torch: per row group gather, attend, merge, scatter."""
    partials = rect_partials(q, k, v, fast.rects)
    out = output_buffer(q, fast, partials)
    for group, (rows, keys) in zip(fast.groups, _device_groups(fast, q.device), strict=True):
        parts: list[Partial] = []
        if group.owner >= 0:
            base_out, base_lse = partials[group.owner]
            at = rows - fast.rects[group.owner].q0
            parts.append((gather_rows(base_out, at), base_lse.index_select(2, at)))
        if keys.numel():
            parts.append(attention_with_lse(gather_rows(q, rows), gather_rows(k, keys), gather_rows(v, keys)))
        merged = parts[0][0] if len(parts) == 1 else merge_partials([p[0] for p in parts], [p[1] for p in parts])[0]
        scatter_rows_(out, rows, merged.to(out.dtype))
    zero_rows_(out, fast)
    return out


def fast_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan, options: KernelOptions | None = None
) -> torch.Tensor:
    """Region attention of `q, k, v: [B, H, S, D]` under `plan`: unmasked rects plus an exact residual."""
    if plan.is_full:
        return F.scaled_dot_product_attention(q, k, v)
    fast = fast_plan_for(plan, q.device)
    if residual_backend(q, options) == "triton":
        from replan_editor.attention import fast_triton

        return fast_triton.run_triton(q, k, v, fast, (options or KernelOptions()).triton)
    return run_torch(q, k, v, fast)
