"""Kernel registry: `auto` resolution, requirements that say what to install, registration rules."""

from __future__ import annotations

import pytest
import torch

from replan_editor.attention import AttentionKernel, KernelUnavailable, Requirement, register, registry, resolve_kernel
from replan_editor.attention.registry import CPU_DENSE_MAX_SEQ, select_kernel


def test_auto_runs_fast_on_cuda_whatever_the_length() -> None:
    assert select_kernel(torch.device("cuda"), 100) is AttentionKernel.FAST
    assert select_kernel(torch.device("cuda"), 100_000) is AttentionKernel.FAST


def test_auto_on_cpu_is_dense_for_short_sequences_and_fast_for_long_ones() -> None:
    cpu = torch.device("cpu")
    assert select_kernel(cpu, CPU_DENSE_MAX_SEQ) is AttentionKernel.DENSE
    assert select_kernel(cpu, CPU_DENSE_MAX_SEQ + 1) is AttentionKernel.FAST
    assert resolve_kernel("auto", cpu, 10) is AttentionKernel.DENSE


def test_missing_requirement_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = Requirement(what="a kernel library", install="pip install kernel-library", check=lambda: False)
    entry = registry._KERNELS[AttentionKernel.FLEX]
    monkeypatch.setitem(registry._KERNELS, AttentionKernel.FLEX, registry._Entry(entry.fn, (missing,)))
    with pytest.raises(KernelUnavailable) as error:
        resolve_kernel(AttentionKernel.FLEX, torch.device("cpu"), 10)
    assert "pip install kernel-library" in error.value.message
    assert error.value.code == "attention_kernel_unavailable"
    assert error.value.status == 503


def test_auto_cannot_be_registered() -> None:
    with pytest.raises(ValueError, match="auto"):
        register(AttentionKernel.AUTO)


def test_builtin_kernels_are_registered_with_their_requirements() -> None:
    assert set(registry._KERNELS) == {AttentionKernel.DENSE, AttentionKernel.FLEX, AttentionKernel.FAST}
    assert registry._KERNELS[AttentionKernel.FLEX].requires == (registry.FLEX_ATTENTION,)
    assert registry.FLEX_ATTENTION.check()  # torch >= 2.5 here
