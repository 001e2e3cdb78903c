"""Per-call knobs of the region-attention kernels, shared by the registry and every kernel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TritonConfig:
    """Launch parameters of the `fast` kernel's Triton residual (see `fast_triton`); defaults measured on an
    H200 at Kontext shapes.

    Attributes:
        block_m: rows per program. block_n: keys per inner step.
        chunk_keys: most keys one program attends; longer key lists are split across programs.
        num_warps, num_stages: Triton's.
        side_stream: compute split programs and the rects after the first on a side stream while the first
            rect runs.
        overlap: compute every residual attention on the side stream too (as one-chunk splits) and only merge
            after the first rect, instead of attending and merging in one pass after it.
    """

    block_m: int = 64
    block_n: int = 64
    chunk_keys: int = 1024
    num_warps: int = 4
    num_stages: int = 2
    side_stream: bool = True
    overlap: bool = False


@dataclass(frozen=True)
class KernelOptions:
    """Kernel options; every kernel accepts them and ignores those that are not its own.

    Attributes:
        flex_compile: run FlexAttention (and its block-mask builder) under `torch.compile`; None compiles
            on CUDA and runs eagerly elsewhere (eager flex on CPU is slow but needs no compiler).
        fast_residual: how `fast` computes the pairs its unmasked calls leave: `triton` (fused kernels; the
            default on CUDA where Triton is installed) or `torch` (gathers and small calls; elsewhere).
        triton: the Triton residual's launch parameters.
    """

    flex_compile: bool | None = None
    fast_residual: Literal["triton", "torch"] | None = None
    triton: TritonConfig = TritonConfig()
