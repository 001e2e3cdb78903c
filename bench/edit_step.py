"""One denoising step of a random-weight full-size FLUX.1 Kontext (and optionally Qwen-Image) transformer:
plain vs RePlan with 2 regions, trimmed and padded hints, unmasked and with every region-attention kernel,
all measured in one run on one card.

What it answers (DESIGN §5): how much a region edit costs per step against the plain edit, split into the
cost of the longer text (hints, measured unmasked) and the cost of masking (each kernel). The transformer is
built from the real FLUX.1 config (19 double + 38 single blocks, 24 heads × 128, joint dim 4096, pooled 768,
in_channels 64, RoPE axes (16, 56, 56), guidance embeds) with random bf16 weights; no checkpoint is needed.
At 1024² the sequence is text + 4096 noise + 4096 image-latent tokens. The region cases run through our
`FluxRegionAttnProcessor` (the same processor the editor service installs) with a `RegionMask` per call;
the unmasked cases run the same processor without one (the stock diffusers path).

    python bench/edit_step.py                 # CUDA, bf16, Kontext at 1024²
    python bench/edit_step.py --qwen          # also the Qwen-Image transformer (60 blocks, ~20B params)
    python bench/edit_step.py --quick         # tiny shapes on CPU: checks the script works

Prints a table and writes `bench/results/edit_step-<card>.json` (card, torch/diffusers versions, shapes,
git commit from `git` or `$REPLAN_GIT_COMMIT`). Imports only torch, diffusers and replan packages.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: The real FLUX.1 [dev] / Kontext transformer config.
FLUX_CONFIG: dict[str, Any] = {
    "patch_size": 1,
    "in_channels": 64,
    "num_layers": 19,
    "num_single_layers": 38,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 4096,
    "pooled_projection_dim": 768,
    "guidance_embeds": True,
    "axes_dims_rope": (16, 56, 56),
}
FLUX_QUICK_CONFIG: dict[str, Any] = {
    **FLUX_CONFIG,
    "num_layers": 2,
    "num_single_layers": 2,
    "attention_head_dim": 32,
    "num_attention_heads": 4,
    "joint_attention_dim": 64,
    "pooled_projection_dim": 32,
    "axes_dims_rope": (8, 12, 12),
}

#: The real Qwen-Image transformer config.
QWEN_CONFIG: dict[str, Any] = {
    "patch_size": 2,
    "in_channels": 64,
    "out_channels": 16,
    "num_layers": 60,
    "attention_head_dim": 128,
    "num_attention_heads": 24,
    "joint_attention_dim": 3584,
    "guidance_embeds": False,
    "axes_dims_rope": (16, 56, 56),
}
QWEN_QUICK_CONFIG: dict[str, Any] = {
    **QWEN_CONFIG,
    "num_layers": 2,
    "attention_head_dim": 32,
    "num_attention_heads": 4,
    "joint_attention_dim": 64,
    "axes_dims_rope": (8, 12, 12),
}


@dataclass(frozen=True)
class Shapes:
    """Token counts of one backbone's step."""

    image_px: int
    main_tokens: int
    trimmed_hint: int
    padded_hint: int
    image_prompt: tuple[int, int] | None = None  # Qwen: the vision span inside the main prompt

    @property
    def grid(self) -> int:
        return self.image_px // 16


#: Kontext 1024²: T5 main prompt padded to 512; short hints trimmed to one 16-token bucket (the editor's), or
#: to 64 (a 64-token bucket: the sequence stays a multiple of 128), or padded to 512 (the original's way).
FLUX_SHAPES = Shapes(image_px=1024, main_tokens=512, trimmed_hint=16, padded_hint=512)
FLUX_QUICK_SHAPES = Shapes(image_px=256, main_tokens=64, trimmed_hint=16, padded_hint=64)
#: Qwen-Image-Edit 1024²: ~1371 vision tokens (1036² VL input) + template text; hints are unpadded (~24).
QWEN_SHAPES = Shapes(image_px=1024, main_tokens=1392, trimmed_hint=24, padded_hint=24, image_prompt=(0, 1371))
QWEN_QUICK_SHAPES = Shapes(image_px=256, main_tokens=48, trimmed_hint=8, padded_hint=8, image_prompt=(0, 40))


@dataclass
class CaseResult:
    name: str
    hints: str
    kernel: str
    text_tokens: int
    seq_len: int
    median_ms: float
    min_ms: float
    times_ms: list[float]
    vs_plain: float = 1.0
    allowed_fraction: float | None = None
    mask_plan_build_ms: float | None = None


@dataclass
class BackboneResult:
    backbone: str
    config: dict[str, Any]
    image_tokens: int
    cases: list[CaseResult] = field(default_factory=list)


def _git_commit() -> str:
    if os.environ.get("REPLAN_GIT_COMMIT"):
        return os.environ["REPLAN_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _timer(device: torch.device) -> Callable[[Callable[[], object]], float]:
    """A function that runs a callable once and returns its wall time in ms (CUDA events on CUDA)."""
    if device.type == "cuda":

        def cuda_time(fn: Callable[[], object]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return float(start.elapsed_time(end))

        return cuda_time

    def cpu_time(fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000.0

    return cpu_time


def _build(cls: type, config: dict[str, Any], device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Random-weight model built directly on `device` in `dtype` (no fp32 CPU copy of ~12-20B params)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            torch.manual_seed(0)
            model = cls(**config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def _layout_and_plans(shapes: Shapes, hint_tokens: int, *, qwen: bool) -> tuple[Any, Any, float, Any]:
    """Token layout of a 2-region plan on a square image (in the editors' plan order), its default-rules mask
    plan, the build time and the text order a Qwen processor joins its stream in (None for Kontext)."""
    from replan_common.geometry import ExpandMode, Size
    from replan_common.plan import Region, RegionPlan
    from replan_editor.attention.layout import layout_from_plan
    from replan_editor.attention.mask_plan import MaskPlanCache
    from replan_editor.attention.rules import default_rules

    px = shapes.image_px
    plan = RegionPlan(
        global_prompt="keep remaining part of image unchanged.",
        regions=(
            Region(bbox=(0.10 * px, 0.15 * px, 0.40 * px, 0.50 * px), hint="a small potted plant"),
            Region(bbox=(0.55 * px, 0.30 * px, 0.90 * px, 0.80 * px), hint="a red cup"),
        ),
    )
    size = Size(px, px)
    image_prompt, text_order = shapes.image_prompt, None
    if image_prompt is not None:
        from replan_editor.pipelines.region_mask import plan_text_order

        order, image_prompt = plan_text_order(shapes.main_tokens, (hint_tokens, hint_tokens), image_prompt)
        text_order = torch.tensor(order, device="cuda" if torch.cuda.is_available() else "cpu")
    layout = layout_from_plan(
        plan,
        size,
        size,
        main_tokens=shapes.main_tokens,
        hint_tokens=[hint_tokens, hint_tokens],
        image_prompt=image_prompt,
        expand_value=0.15,
        expand_mode=ExpandMode.RATIO,
        hints_first=True,  # the editors' order (see RegionMask)
    )
    start = time.perf_counter()
    mask_plan = MaskPlanCache().get(layout, default_rules(2, has_image_prompt=qwen))
    return layout, mask_plan, (time.perf_counter() - start) * 1000.0, text_order


def _flux_call(
    model: torch.nn.Module, shapes: Shapes, text: int, device: torch.device, dtype: torch.dtype
) -> Callable[[dict[str, Any] | None], object]:
    n = shapes.grid * shapes.grid
    grid = torch.arange(n, device=device)
    ids = torch.zeros(2 * n, 3, device=device, dtype=dtype)
    ids[n:, 0] = 1  # Kontext: image-latent copy
    ids[:, 1] = (grid // shapes.grid).repeat(2).to(dtype)
    ids[:, 2] = (grid % shapes.grid).repeat(2).to(dtype)
    g = torch.Generator(device=device).manual_seed(0)
    config = model.config
    inputs = {
        "hidden_states": torch.randn(1, 2 * n, config.in_channels, generator=g, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(
            1, text, config.joint_attention_dim, generator=g, device=device, dtype=dtype
        ),
        "pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=g, device=device, dtype=dtype),
        "timestep": torch.full((1,), 0.5, device=device, dtype=dtype),
        "guidance": torch.full((1,), 2.5, device=device, dtype=torch.float32),
        "img_ids": ids,
        "txt_ids": torch.zeros(text, 3, device=device, dtype=dtype),
        "return_dict": False,
    }

    def call(attention_kwargs: dict[str, Any] | None) -> object:
        return model(**inputs, joint_attention_kwargs=attention_kwargs)

    return call


def _qwen_call(
    model: torch.nn.Module, shapes: Shapes, text: int, device: torch.device, dtype: torch.dtype
) -> Callable[[dict[str, Any] | None], object]:
    n = shapes.grid * shapes.grid
    g = torch.Generator(device=device).manual_seed(0)
    config = model.config
    inputs = {
        "hidden_states": torch.randn(1, 2 * n, config.in_channels, generator=g, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(
            1, text, config.joint_attention_dim, generator=g, device=device, dtype=dtype
        ),
        "timestep": torch.full((1,), 0.5, device=device, dtype=dtype),
        "img_shapes": [[(1, shapes.grid, shapes.grid), (1, shapes.grid, shapes.grid)]],
        "return_dict": False,
    }

    def call(attention_kwargs: dict[str, Any] | None) -> object:
        return model(**inputs, attention_kwargs=attention_kwargs)

    return call


def _measure(
    run: Callable[[], object], timer: Callable[[Callable[[], object]], float], warmup: int, iters: int
) -> list[float]:
    with torch.no_grad():
        for _ in range(warmup):
            timer(run)
        return [timer(run) for _ in range(iters)]


def bench_backbone(
    name: str,
    model: torch.nn.Module,
    shapes: Shapes,
    make_call: Callable[..., Callable[[dict[str, Any] | None], object]],
    *,
    device: torch.device,
    dtype: torch.dtype,
    kernels: list[Any],
    warmup: int,
    iters: int,
) -> BackboneResult:
    """Plain, unmasked-with-hints and every kernel with trimmed and padded hints, on one model."""
    from replan_editor.pipelines.region_mask import REGION_MASK_KWARG, RegionMask

    qwen = name == "qwen-image"
    timer = _timer(device)
    result = BackboneResult(
        backbone=name,
        config={k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items()},
        image_tokens=2 * shapes.grid * shapes.grid,
    )
    n_latent = 2 * shapes.grid * shapes.grid

    def record(case: CaseResult) -> None:
        result.cases.append(case)
        print(f"  {case.name:<28} {case.seq_len:>6} tok  median {case.median_ms:9.2f} ms", flush=True)

    plain_call = make_call(model, shapes, shapes.main_tokens, device, dtype)
    times = _measure(lambda: plain_call(None), timer, warmup, iters)
    record(
        CaseResult(
            "plain",
            "-",
            "-",
            shapes.main_tokens,
            shapes.main_tokens + n_latent,
            statistics.median(times),
            min(times),
            times,
        )
    )
    hint_modes = (
        {"trimmed": shapes.trimmed_hint}
        if qwen
        else {"trimmed": shapes.trimmed_hint, "trimmed64": 4 * shapes.trimmed_hint, "padded": shapes.padded_hint}
    )
    for mode, hint in hint_modes.items():
        text = shapes.main_tokens + 2 * hint
        call = make_call(model, shapes, text, device, dtype)
        times = _measure(lambda call=call: call(None), timer, warmup, iters)
        record(
            CaseResult(
                f"2 hints {mode}, unmasked",
                f"{mode} {hint}",
                "-",
                text,
                text + n_latent,
                statistics.median(times),
                min(times),
                times,
            )
        )
        _, mask_plan, build_ms, text_order = _layout_and_plans(shapes, hint, qwen=qwen)
        for kernel in kernels:
            kwargs = {REGION_MASK_KWARG: RegionMask(mask_plan, kernel, text_order)}
            times = _measure(lambda call=call, kwargs=kwargs: call(kwargs), timer, warmup, iters)
            record(
                CaseResult(
                    f"2 hints {mode}, {kernel.value}",
                    f"{mode} {hint}",
                    kernel.value,
                    text,
                    text + n_latent,
                    statistics.median(times),
                    min(times),
                    times,
                    allowed_fraction=mask_plan.allowed_fraction,
                    mask_plan_build_ms=build_ms,
                )
            )
    plain = result.cases[0].median_ms
    for case in result.cases:
        case.vs_plain = case.median_ms / plain
    return result


def _print_table(result: BackboneResult) -> None:
    print(f"\n{result.backbone}: one denoising step ({result.image_tokens} latent tokens)")
    print(f"{'case':<30} {'text':>6} {'seq':>6} {'median ms':>10} {'min ms':>9} {'vs plain':>9} {'allowed':>8}")
    for c in result.cases:
        allowed = f"{c.allowed_fraction:.3f}" if c.allowed_fraction is not None else "-"
        print(
            f"{c.name:<30} {c.text_tokens:>6} {c.seq_len:>6} {c.median_ms:>10.2f} {c.min_ms:>9.2f} "
            f"{c.vs_plain:>8.3f}x {allowed:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny shapes on CPU (checks the script works)")
    parser.add_argument("--qwen", action="store_true", help="also benchmark the Qwen-Image transformer")
    parser.add_argument("--no-flux", action="store_true", help="skip the Kontext transformer")
    parser.add_argument("--iters", type=int, default=None, help="timed iterations per case (default 10; quick 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations per case (default 3; quick 1)")
    parser.add_argument("--kernels", default="dense,flex,fast", help="comma-separated kernels to run")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON path (default bench/results/edit_step-<card>.json)"
    )
    args = parser.parse_args()

    import diffusers
    from diffusers import FluxTransformer2DModel, QwenImageTransformer2DModel

    from replan_common.protocol import AttentionKernel
    from replan_editor.pipelines.flux_processor import FluxRegionAttnProcessor
    from replan_editor.pipelines.qwen_processor import QwenRegionAttnProcessor

    if args.quick:
        device, dtype = torch.device("cpu"), torch.float32
        card = "cpu-quick"
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --quick on CPU")
        device, dtype = torch.device("cuda"), torch.bfloat16
        card = torch.cuda.get_device_name(device)
    iters = args.iters if args.iters is not None else (2 if args.quick else 10)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    kernels = [AttentionKernel(k.strip()) for k in args.kernels.split(",") if k.strip()]

    report: dict[str, Any] = {
        "bench": "edit_step",
        "card": card,
        "quick": args.quick,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "iters": iters,
        "warmup": warmup,
        "backbones": [],
    }
    print(f"edit_step on {card}: torch {torch.__version__}, diffusers {diffusers.__version__}, {report['dtype']}")

    runs: list[tuple[str, type, dict[str, Any], Shapes, Any, Callable[..., Any]]] = []
    if not args.no_flux:
        runs.append(
            (
                "flux-kontext",
                FluxTransformer2DModel,
                FLUX_QUICK_CONFIG if args.quick else FLUX_CONFIG,
                FLUX_QUICK_SHAPES if args.quick else FLUX_SHAPES,
                FluxRegionAttnProcessor,
                _flux_call,
            )
        )
    if args.qwen:
        runs.append(
            (
                "qwen-image",
                QwenImageTransformer2DModel,
                QWEN_QUICK_CONFIG if args.quick else QWEN_CONFIG,
                QWEN_QUICK_SHAPES if args.quick else QWEN_SHAPES,
                QwenRegionAttnProcessor,
                _qwen_call,
            )
        )
    for name, cls, config, shapes, processor, make_call in runs:
        print(f"\n{name}: building random-weight transformer on {device} ...", flush=True)
        model = _build(cls, config, device, dtype)
        model.set_attn_processor(processor())
        params = sum(p.numel() for p in model.parameters())
        result = bench_backbone(
            name, model, shapes, make_call, device=device, dtype=dtype, kernels=kernels, warmup=warmup, iters=iters
        )
        result.config["parameters"] = params
        _print_table(result)
        report["backbones"].append(asdict(result))
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()

    out = args.out or RESULTS_DIR / f"edit_step-{_slug(card)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
