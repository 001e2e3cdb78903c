"""The one entry point of region attention: `region_attention(q, k, v, mask_plan, kernel=...)`.

Kernels register under an `AttentionKernel` name with the requirements they need; a missing requirement
raises `KernelUnavailable` saying what to install. The registry imports the built-in kernels explicitly
(`dense`, `flex`, `fast`) and resolves `auto` by device and shape. No global "active kernel": callers pass
the kernel on every call (the attention processor holds it).

    out = region_attention(q, k, v, plan, kernel=AttentionKernel.AUTO)   # q, k, v: [B, H, S, D], RoPE applied

A missing plan, or one that allows every pair (e.g. no regions under the default rules), is one plain
`F.scaled_dot_product_attention(q, k, v)` call, so the output equals the unguided pipeline bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from replan_common.errors import ServiceUnavailable
from replan_common.protocol import AttentionKernel
from replan_editor.attention import dense, fast, flex
from replan_editor.attention.mask_plan import MaskPlan
from replan_editor.attention.options import KernelOptions

#: `auto` on CPU: dense SDPA up to this sequence length (the S×S mask is cheap there), `fast` above. Measured
#: on 2 cores, 4 heads of 64, fp32: S = 2144 dense 64 ms / fast 138 / eager flex 446; S = 4704 dense 412 ms /
#: fast 363 / eager flex 2168.
CPU_DENSE_MAX_SEQ = 4096


class KernelFn(Protocol):
    def __call__(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan, options: KernelOptions | None = None
    ) -> torch.Tensor: ...


class KernelUnavailable(ServiceUnavailable):
    """The requested attention kernel cannot run here; the message says what to install."""

    default_code = "attention_kernel_unavailable"


@dataclass(frozen=True)
class Requirement:
    """Something a kernel needs: `check()` tells whether it is present, `install` how to get it."""

    what: str
    install: str
    check: Callable[[], bool]


@dataclass(frozen=True)
class _Entry:
    fn: KernelFn
    requires: tuple[Requirement, ...]


_KERNELS: dict[AttentionKernel, _Entry] = {}


def register(kernel: AttentionKernel, *, requires: Sequence[Requirement] = ()) -> Callable[[KernelFn], KernelFn]:
    """Decorator: make `fn(q, k, v, plan, options) -> out` the implementation of `kernel`."""
    if kernel is AttentionKernel.AUTO:
        raise ValueError("'auto' is resolved by the registry, not registered")

    def decorate(fn: KernelFn) -> KernelFn:
        _KERNELS[kernel] = _Entry(fn, tuple(requires))
        return fn

    return decorate


def _has_flex_attention() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


FLEX_ATTENTION = Requirement(
    what="FlexAttention (torch.nn.attention.flex_attention, torch >= 2.5)",
    install="pip install 'torch>=2.5'",
    check=_has_flex_attention,
)

register(AttentionKernel.DENSE)(dense.dense_attention)
register(AttentionKernel.FLEX, requires=[FLEX_ATTENTION])(flex.flex_attention_kernel)
register(AttentionKernel.FAST)(fast.fast_attention)


def select_kernel(device: torch.device, seq_len: int) -> AttentionKernel:
    """What `auto` runs: `fast` on CUDA; on CPU `dense` for short sequences, `fast` otherwise."""
    if device.type == "cuda":
        return AttentionKernel.FAST
    return AttentionKernel.DENSE if seq_len <= CPU_DENSE_MAX_SEQ else AttentionKernel.FAST


def resolve_kernel(kernel: AttentionKernel | str, device: torch.device, seq_len: int) -> AttentionKernel:
    """The concrete kernel for a request (`auto` resolved), after checking its requirements."""
    kernel = AttentionKernel(kernel)
    if kernel is AttentionKernel.AUTO:
        kernel = select_kernel(device, seq_len)
    entry = _KERNELS.get(kernel)
    if entry is None:
        raise KernelUnavailable(f"attention kernel {kernel.value!r} is not registered", param="kernel")
    for requirement in entry.requires:
        if not requirement.check():
            raise KernelUnavailable(
                f"attention kernel {kernel.value!r} needs {requirement.what}; install it with: {requirement.install}",
                param="kernel",
            )
    return kernel


def region_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask_plan: MaskPlan | None,
    *,
    kernel: AttentionKernel | str = AttentionKernel.AUTO,
    options: KernelOptions | None = None,
) -> torch.Tensor:
    """Attention of `q, k, v: [B, H, S, D]` (RoPE applied) restricted to the pairs `mask_plan` allows.

    Returns `[B, H, S, D]` like `F.scaled_dot_product_attention`; queries with no allowed key get zeros.
    """
    if mask_plan is None or mask_plan.is_full:
        return F.scaled_dot_product_attention(q, k, v)
    if q.dim() != 4 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError(f"q, k, v must all be [B, H, S, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[2] != mask_plan.seq_len:
        raise ValueError(f"sequence length {q.shape[2]} does not match the mask plan's {mask_plan.seq_len}")
    resolved = resolve_kernel(kernel, q.device, mask_plan.seq_len)
    return _KERNELS[resolved].fn(q, k, v, mask_plan, options)
