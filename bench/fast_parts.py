"""Benchmark: what the `fast` region-attention kernel spends, part by part, and its Triton tunables.

At FLUX.1 Kontext 1024² shapes (24 heads × 128, bf16, hints first as the editors order them, default
rules, K regions with random boxes, hints trimmed to 64 or padded to 512) it times, in one run on one card:

- unmasked `scaled_dot_product_attention` at the same sequence length (the baseline, 1.00×);
- the plan's rects alone (its unmasked fused calls on views: the floor for this plan);
- `fast` with the torch residual (gathers and small calls);
- `fast` with the Triton residual, for each launch configuration in `VARIANTS`;

and the relative error of every output against a float32 `dense` reference (bf16 inputs). Run on a CUDA GPU:

    PYTHONPATH=services:editor-service python bench/fast_parts.py

Prints a table and writes `bench/results/fast_parts-<card>.json`. Without CUDA it runs tiny shapes on the CPU
(Triton in its interpreter if `TRITON_INTERPRET=1`, else the torch residual only) to check the script.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from attention import (
    CPU_TINY,
    KONTEXT_1024,
    Shapes,
    card_name,
    git_commit,
    make_layout,
    make_qkv,
    random_spans,
    slug,
    time_ms,
)

from replan_common.geometry import TokenSpan
from replan_editor.attention import MaskPlan, default_rules, region_attention
from replan_editor.attention.fast import fast_plan_for, rect_partials, run_torch
from replan_editor.attention.fast_plan import GPU_COSTS, FastCosts, build_fast_plan
from replan_editor.attention.options import TritonConfig

REPO = Path(__file__).resolve().parent.parent

#: Plan costs and Triton launch configurations to compare with the defaults (`triton`).
VARIANTS: dict[str, tuple[FastCosts, TritonConfig]] = {
    "triton": (GPU_COSTS, TritonConfig()),
    "overlap": (GPU_COSTS, TritonConfig(overlap=True)),
    "m32": (GPU_COSTS, TritonConfig(block_m=32)),
    "m128w8": (GPU_COSTS, TritonConfig(block_m=128, num_warps=8)),
    "w2": (GPU_COSTS, TritonConfig(num_warps=2)),
    "extend": (replace(GPU_COSTS, row_copy=1e12), TritonConfig()),
    "split_hint_rows": (replace(GPU_COSTS, min_rect_rows=1024, min_rect_pairs=1 << 22), TritonConfig()),
    "no_side_stream": (GPU_COSTS, TritonConfig(side_stream=False)),
}


def relative_error(out: torch.Tensor, reference: torch.Tensor) -> float:
    return float((out.float() - reference).norm() / reference.norm())


def measure_case(
    shapes: Shapes,
    hints: str,
    regions: int,
    spans: tuple[TokenSpan, ...],
    variants: dict[str, tuple[FastCosts, TritonConfig]],
    device: torch.device,
    *,
    warmup: int,
    iters: int,
    profiled: set[str],
) -> list[dict[str, object]]:
    """Every variant on one layout: its time, and its error against a float32 dense reference."""
    hint_tokens = shapes.padded_hint if hints == "padded" else shapes.trimmed_hint
    plan = MaskPlan(make_layout(shapes, spans, hint_tokens, hints_first=True), default_rules(regions))
    q, k, v = make_qkv(shapes, plan.seq_len, device, seed=regions)
    fast = fast_plan_for(plan, device)
    reference = region_attention(q.float(), k.float(), v.float(), plan, kernel="dense")
    rows: list[dict[str, object]] = []

    def timed(name: str, fn: Callable[[], object], error: float | None) -> dict[str, object]:
        ms = time_ms(fn, device, warmup=warmup, iters=iters)
        rows.append({"hints": hints, "regions": regions, "seq_len": plan.seq_len, "variant": name, "ms": ms})
        rows[-1]["rel_err"] = error
        print(f"  {hints:7s} K={regions:<2d} {name:16s} {ms:8.3f} ms  err {error}", flush=True)
        return rows[-1]

    timed("sdpa", functools.partial(F.scaled_dot_product_attention, q, k, v), None)
    timed("rects", functools.partial(rect_partials, q, k, v, fast.rects), None)["plan"] = {
        "rects": [asdict(r) for r in fast.rects],
        "out_from_first": fast.out_from_first,
        "rect_pairs": fast.rect_pairs,
        "residual_pairs": fast.residual_pairs,
        "groups": len(fast.groups),
        "allowed": plan.allowed_fraction,
    }
    calls: dict[str, Callable[[], torch.Tensor]] = {"torch": functools.partial(run_torch, q, k, v, fast)}
    for name, (costs, config) in variants.items():
        from replan_editor.attention.fast_triton import run_triton

        calls[name] = functools.partial(run_triton, q, k, v, build_fast_plan(plan, costs), config)
    for name, call in calls.items():
        try:
            error = relative_error(call(), reference)
        except Exception as failure:  # a configuration that does not build here: record it, go on
            rows.append({"hints": hints, "regions": regions, "variant": name, "failed": repr(failure)})
            print(f"  {hints:7s} K={regions:<2d} {name:16s} FAILED {failure!r}", flush=True)
            continue
        timed(name, call, error)
        if name in profiled:
            profile(call, f"{hints} K={regions} {name}")
    return rows


def measure(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    shapes = KONTEXT_1024 if device.type == "cuda" else CPU_TINY
    triton_ok = device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    variants = {name: VARIANTS[name] for name in args.variants.split(",")} if triton_ok else {}
    profiled = set(args.profile.split(",")) if device.type == "cuda" else set()
    warmup, iters = (args.warmup, args.iters) if device.type == "cuda" else (1, 2)
    rng = random.Random(args.seed)
    rows: list[dict[str, object]] = []
    for hints in args.hints.split(","):
        for regions in (int(k) for k in args.regions.split(",")):
            spans = random_spans(rng, shapes.grid, regions)
            rows += measure_case(
                shapes, hints, regions, spans, variants, device, warmup=warmup, iters=iters, profiled=profiled
            )
    baseline = {(r["hints"], r["regions"]): r["ms"] for r in rows if r["variant"] == "sdpa"}
    for r in rows:
        if "ms" in r:
            r["vs_sdpa"] = r["ms"] / baseline[(r["hints"], r["regions"])]  # type: ignore[operator]
    return {
        "card": card_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "triton": _triton_version(),
        "commit": args.commit or git_commit(),
        "shapes": asdict(shapes),
        "warmup": warmup,
        "iters": iters,
        "variants": {name: {"costs": asdict(c), "triton": asdict(t)} for name, (c, t) in variants.items()},
        "rows": rows,
    }


def profile(call: Callable[[], torch.Tensor], title: str) -> None:
    """Print the device time of each kernel over 10 calls (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            call()
        torch.cuda.synchronize()
    print(f"--- profile {title} (10 calls)")
    print(prof.key_averages().table(sort_by="device_time_total", row_limit=12, max_name_column_width=60))


def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return str(triton.__version__)


def print_table(result: dict[str, object]) -> None:
    print(f"\n{result['card']}  torch {result['torch']}  triton {result['triton']}  commit {result['commit']}")
    print(f"{'hints':8s}{'K':>3s}{'S':>7s}  {'variant':16s}{'ms':>9s}{'x sdpa':>8s}{'rel err':>10s}")
    for r in result["rows"]:  # type: ignore[union-attr]
        if "failed" in r:
            print(f"{r['hints']:8s}{r['regions']:>3d}{'':7s}  {r['variant']:16s} failed: {r['failed'][:60]}")
            continue
        err = "" if r["rel_err"] is None else f"{r['rel_err']:.1e}"
        print(
            f"{r['hints']:8s}{r['regions']:>3d}{r['seq_len']:>7d}  {r['variant']:16s}{r['ms']:>9.3f}"
            f"{r['vs_sdpa']:>8.3f}{err:>10s}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regions", default="1,2,4,8,16")
    parser.add_argument("--hints", default="trimmed,padded")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20, help="timed samples of 10 back-to-back calls each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="", help="variants to profile per kernel (CUDA), comma-separated")
    parser.add_argument("--commit", default="", help="commit to record when git is not available")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/fast_parts-<card>.json)")
    args = parser.parse_args(argv)
    result = measure(args)
    print_table(result)
    out = args.out or REPO / "bench" / "results" / f"fast_parts-{slug(str(result['card']))}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
