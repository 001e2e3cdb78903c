"""Attention over a subset of keys that also returns its log-sum-exp, and the exact merge of such partials.

If the keys of a query are split into disjoint sets with partial results `(o_i, lse_i)`, the attention
over their union is `Σ exp(lse_i − L) o_i` with `L = log Σ exp(lse_i)`: this is how the `fast` kernel
stitches its unmasked calls and its residual together. This module owns the choice of the fused kernel
that returns the log-sum-exp (cuDNN, then flash, then memory-efficient on CUDA; the flash kernel on CPU;
plain torch otherwise) and the merge; it knows nothing of masks or layouts.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

logger = logging.getLogger(__name__)

LseAttention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _math(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.matmul(torch.exp(scores - lse.unsqueeze(-1)), v.float())
    return out.to(q.dtype), lse


def _cpu_flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)
    return out, lse.float()


def _cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    result = torch.ops.aten._scaled_dot_product_cudnn_attention(q, k, v, None, True)
    return result[0], result[1].reshape(q.shape[:-1]).float()


def _flash(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    result = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)
    return result[0], result[1].reshape(q.shape[:-1]).float()


def _efficient(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    result = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)
    return result[0], result[1][..., : q.shape[-2]].float()  # the LSE may be padded to a multiple of 32


_CUDA_HALF_ORDER: tuple[tuple[str, LseAttention], ...] = (
    ("cudnn", _cudnn),
    ("flash", _flash),
    ("efficient", _efficient),
    ("math", _math),
)
_CUDA_FLOAT_ORDER: tuple[tuple[str, LseAttention], ...] = (("efficient", _efficient), ("math", _math))
_CPU_ORDER: tuple[tuple[str, LseAttention], ...] = (("cpu_flash", _cpu_flash), ("math", _math))

# Which backend failed for which (backend, device type, dtype, head dim): tried once, then skipped.
_FAILED: set[tuple[str, str, torch.dtype, int]] = set()


def _order(q: torch.Tensor) -> tuple[tuple[str, LseAttention], ...]:
    if q.device.type == "cuda":
        return _CUDA_HALF_ORDER if q.dtype in (torch.float16, torch.bfloat16) else _CUDA_FLOAT_ORDER
    if q.device.type == "cpu":
        return _CPU_ORDER
    return (("math", _math),)


def attention_with_lse(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, backend: str | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention with the default scale, and its log-sum-exp.

    Args:
        q: `[B, H, Lq, D]`; k, v: `[B, H, Lk, D]`, Lk >= 1; any strides with a contiguous last dim (views
            of a longer sequence work without a copy).
        backend: force one of `cudnn`, `flash`, `efficient`, `cpu_flash`, `math` (tests, benchmarks).

    Returns:
        out `[B, H, Lq, D]` in q's dtype and lse `[B, H, Lq]` float32 (natural log of Σ exp(q·k/√D)).
    """
    if backend is not None:
        table = dict(_CUDA_HALF_ORDER + _CPU_ORDER)
        return table[backend](q, k, v)
    for name, fn in _order(q):
        key = (name, q.device.type, q.dtype, q.shape[-1])
        if key in _FAILED:
            continue
        if name == "math":
            return fn(q, k, v)
        try:
            return fn(q, k, v)
        except RuntimeError as error:  # unsupported dtype, head dim, stride or build: remember, fall back
            _FAILED.add(key)
            logger.warning("attention backend %s unavailable for %s (%s); falling back", name, key[1:], error)
    return _math(q, k, v)


def merge_partials(
    outs: list[torch.Tensor], lses: list[torch.Tensor], *, out_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine partial attentions over disjoint key sets of the same queries (`[B, H, L, D]`, `[B, H, L]`)."""
    lse = torch.stack(lses)  # [P, B, H, L]
    total = torch.logsumexp(lse, dim=0)
    weights = torch.exp(lse - total.unsqueeze(0)).unsqueeze(-1)
    out = (torch.stack([o.float() for o in outs]) * weights).sum(dim=0)
    return out.to(out_dtype or outs[0].dtype), total
