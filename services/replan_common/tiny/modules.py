"""Small torch helpers shared by the tiny-model builders and loaders: eval mode, aligned CPU weights.

`own_cpu_storage` exists because weights memory-mapped from safetensors can sit at addresses that are not
64-byte aligned, and CPU matmul kernels then take a different path whose rounding differs in the last bits.
Copying them into fresh tensors makes a reloaded CPU model bit-identical to the freshly built one.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def eval_all(pipe: Any) -> Any:
    """Put every `torch.nn.Module` component of a diffusers pipeline in eval mode; returns the pipeline."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    return pipe


def own_cpu_storage(module: ModuleT) -> ModuleT:
    """Give every CPU parameter and buffer its own freshly allocated (aligned) storage; returns `module`."""
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.device.type == "cpu":
                tensor.data = tensor.data.clone()
    return module


def diffusers_dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """`{"dtype": dtype}` for diffusers versions that renamed `torch_dtype`, else `{"torch_dtype": dtype}`."""
    try:
        from diffusers.utils.deprecation_utils import _resolve_dtype  # noqa: F401
    except ImportError:
        return {"torch_dtype": dtype}
    return {"dtype": dtype}
