"""Building the region-edit pipeline a worker (or the CLI) serves, from `EditorSettings`.

The only place that turns settings into a `RegionEditPipeline`: the tiny preset (random weights, CPU) or a
checkpoint (`from_pretrained`), optionally compiled. Torch and diffusers are imported inside the functions,
so importing this module is free; `load_pipeline` runs on the worker's device thread.
"""

from __future__ import annotations

import logging

from replan_editor.settings import DEFAULT_MODELS, EditorSettings, Preset
from replan_editor.worker import EditPipeline

logger = logging.getLogger(__name__)


def load_pipeline(settings: EditorSettings) -> EditPipeline:
    """Load (and compile, when asked) the pipeline `settings` describe."""
    import torch

    from replan_editor.pipelines import RegionEditPipeline

    device = settings.resolved_device
    if settings.resolved_num_threads is not None:
        torch.set_num_threads(settings.resolved_num_threads)
    if settings.preset is Preset.TINY:
        logger.warning(
            "preset tiny: random-weight %s pipeline on %s; edits are noise, for tests and demos only",
            settings.backbone.value,
            device,
        )
        pipeline = RegionEditPipeline.tiny(settings.backbone, seed=settings.tiny_seed, device=device)
    else:
        model = settings.model or DEFAULT_MODELS[settings.backbone]
        logger.info("loading %s from %s on %s", settings.backbone.value, model, device)
        pipeline = RegionEditPipeline.from_pretrained(
            settings.backbone,
            model,
            device=device,
            dtype=getattr(torch, settings.resolved_dtype.value),
            local_files_only=settings.local_files_only,
        )
    if settings.compile:
        compile_pipeline(pipeline)
    return pipeline


def compile_pipeline(pipeline: object) -> None:
    """Compile the pipeline's denoiser in place (the pipeline's own `compile()` when it has one)."""
    own = getattr(pipeline, "compile", None)
    if callable(own):
        own()
        return
    raise RuntimeError(f"{type(pipeline).__name__} has no compile(); run with REPLAN_EDITOR_COMPILE=false")


def available_kernels(device: str) -> list[str]:
    """Region-attention kernels whose requirements are met on `device` (call once torch is loaded)."""
    import torch

    from replan_common.protocol import AttentionKernel
    from replan_editor.attention.registry import KernelUnavailable, resolve_kernel

    usable = []
    for kernel in AttentionKernel:
        if kernel is AttentionKernel.AUTO:
            continue
        try:
            resolve_kernel(kernel, torch.device(device), 0)
        except KernelUnavailable:
            continue
        usable.append(kernel.value)
    return usable
