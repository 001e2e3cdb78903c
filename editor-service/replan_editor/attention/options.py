"""Per-call knobs of the region-attention kernels, shared by the registry and every kernel."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelOptions:
    """Kernel options; every kernel accepts them and ignores those that are not its own.

    Attributes:
        flex_compile: run FlexAttention (and its block-mask builder) under `torch.compile`; None compiles
            on CUDA and runs eagerly elsewhere (eager flex on CPU is slow but needs no compiler).
    """

    flex_compile: bool | None = None
