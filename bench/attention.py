"""Benchmark: region attention kernels against unmasked SDPA at FLUX.1 Kontext 1024² shapes.

Measures, in one run on one card: unmasked `F.scaled_dot_product_attention` (the baseline), `dense`
(SDPA with a boolean mask), `flex` (compiled FlexAttention with a raster-order BlockMask, like the original)
and `fast` (ours, with the text ordered `[main | hints]` as the original and `[hints | main]`), for
K ∈ {1, 2, 4, 8, 16} regions with hints padded to 512 tokens or trimmed to 64; the time to build a mask
plan, the fast schedule and the flex BlockMask for a new request; the largest error against `dense`; and
the torch.compile recompile count across 20 requests with different random boxes.

Run on a CUDA GPU (from the repository root; with the package installed, PYTHONPATH is not needed):

    PYTHONPATH=services:editor-service python bench/attention.py --check 20

`--check N` first compares every kernel with a float64 `dense` on N random layouts and rule matrices in
fp32 and bf16. Each timing sample is 10 back-to-back calls between two CUDA events, so the host runs
ahead of the device as inside a transformer (launch latency hidden); the median of `--iters` samples is
reported. The whole run takes a few minutes on an H100/H200 (flex compiles once per sequence length).
Writes a table to stdout and JSON (card, torch/CUDA versions, shapes, commit, rows, build times,
recompiles, checks) to `bench/results/attention-<gpu-name>.json`. Without CUDA it falls back to tiny
shapes on the CPU (`--quick` implied) so the script itself can be checked anywhere; those numbers mean
nothing. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from replan_common.geometry import Size, TokenSpan
from replan_common.protocol import AttentionKernel
from replan_editor.attention import (
    AttentionRules,
    KernelOptions,
    MaskPlan,
    TextLayout,
    TokenLayout,
    default_rules,
    locality_rules,
    region_attention,
)
from replan_editor.attention.fast_plan import GPU_COSTS, build_fast_plan
from replan_editor.attention.flex import build_block_mask

logger = logging.getLogger("bench.attention")

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Shapes:
    grid: int  # tokens per side of the latent grid (64 at 1024²)
    heads: int
    head_dim: int
    main_tokens: int
    padded_hint: int
    trimmed_hint: int
    dtype: str
    batch: int = 1

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


KONTEXT_1024 = Shapes(
    grid=64, heads=24, head_dim=128, main_tokens=512, padded_hint=512, trimmed_hint=64, dtype="bfloat16"
)
CPU_TINY = Shapes(grid=8, heads=2, head_dim=16, main_tokens=16, padded_hint=16, trimmed_hint=4, dtype="float32")


@dataclass
class Row:
    hints: str
    regions: int
    rules: str
    seq_len: int
    allowed: float
    kernel: str
    order: str
    median_ms: float
    vs_sdpa: float
    max_abs_err: float | None


def random_spans(rng: random.Random, grid: int, count: int) -> tuple[TokenSpan, ...]:
    """Boxes 10-50 % of the image side, anywhere (so they overlap now and then)."""
    spans = []
    for _ in range(count):
        height = rng.randint(max(1, grid // 10), max(1, grid // 2))
        width = rng.randint(max(1, grid // 10), max(1, grid // 2))
        row0 = rng.randint(0, grid - height)
        col0 = rng.randint(0, grid - width)
        spans.append(TokenSpan(row0, row0 + height, col0, col0 + width))
    return tuple(spans)


def make_layout(shapes: Shapes, spans: tuple[TokenSpan, ...], hint_tokens: int, *, hints_first: bool) -> TokenLayout:
    text = TextLayout(shapes.main_tokens, (hint_tokens,) * len(spans), hints_first=hints_first)
    return TokenLayout(text, Size(shapes.grid, shapes.grid), spans)


def make_qkv(shapes: Shapes, seq_len: int, device: torch.device, seed: int) -> tuple[torch.Tensor, ...]:
    """q, k, v as diffusers hands them over: [B, S, H, D] storage, viewed as [B, H, S, D]."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return tuple(
        torch.randn(
            shapes.batch,
            seq_len,
            shapes.heads,
            shapes.head_dim,
            device=device,
            dtype=shapes.torch_dtype,
            generator=generator,
        ).transpose(1, 2)
        for _ in range(3)
    )


def time_ms(fn: Callable[[], object], device: torch.device, *, warmup: int, iters: int, reps: int = 10) -> float:
    """Median time of one call of `fn` in milliseconds.

    On a GPU each sample is `reps` back-to-back calls between two CUDA events, so the host runs ahead of
    the device as it does inside a transformer with dozens of attention layers: launch latency is hidden
    and what is measured is device time.
    """
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / reps)
    else:
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def host_ms(fn: Callable[[], object], device: torch.device, *, repeats: int) -> float:
    """Median host time of `fn` including device sync, in milliseconds."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def build_times(
    shapes: Shapes, spans: tuple[TokenSpan, ...], hint_tokens: int, device: torch.device, *, repeats: int, flex: bool
) -> dict[str, float]:
    """Per-request build cost: mask plan, fast plan (+ its Triton work lists on a GPU), flex BlockMask; caches
    bypassed."""
    layout = make_layout(shapes, spans, hint_tokens, hints_first=True)
    rules = default_rules(len(spans))
    plan_ms = host_ms(lambda: MaskPlan(layout, rules), device, repeats=repeats)
    plan = MaskPlan(layout, rules)

    def fast_plan() -> object:
        built = build_fast_plan(plan, GPU_COSTS)
        if device.type == "cuda":
            from replan_editor.attention.fast_triton import build_work
            from replan_editor.attention.options import TritonConfig

            return build_work(built, device, TritonConfig())
        return built

    result = {"mask_plan_ms": plan_ms, "fast_plan_ms": host_ms(fast_plan, device, repeats=repeats)}
    if flex:
        result["flex_block_mask_ms"] = host_ms(lambda: build_block_mask(plan, device), device, repeats=repeats)
    return result


def recompiles_across_requests(
    shapes: Shapes, device: torch.device, *, regions: int, requests: int, seed: int
) -> dict[str, int]:
    """Compiled flex over `requests` requests with new random boxes each; graphs compiled after the first."""
    from torch._dynamo.utils import counters

    rng = random.Random(seed)
    options = KernelOptions(flex_compile=True)
    graphs: list[int] = []
    for i in range(requests):
        layout = make_layout(shapes, random_spans(rng, shapes.grid, regions), shapes.trimmed_hint, hints_first=False)
        plan = MaskPlan(layout, default_rules(regions))
        q, k, v = make_qkv(shapes, plan.seq_len, device, seed=i)
        region_attention(q, k, v, plan, kernel=AttentionKernel.FLEX, options=options)
        graphs.append(int(counters["stats"]["unique_graphs"]))
    return {"requests": requests, "graphs_after_first": graphs[0], "recompiles": graphs[-1] - graphs[0]}


def fast_compiles_across_requests(
    shapes: Shapes, device: torch.device, *, regions: int, requests: int, seed: int
) -> dict[str, int | None]:
    """`fast` over `requests` requests with new random boxes each; Triton kernels compiled after the first."""
    from replan_editor.attention.fast_triton import compiled_kernels

    rng = random.Random(seed)
    counts: list[int | None] = []
    for i in range(requests):
        layout = make_layout(shapes, random_spans(rng, shapes.grid, regions), shapes.trimmed_hint, hints_first=True)
        plan = MaskPlan(layout, default_rules(regions))
        q, k, v = make_qkv(shapes, plan.seq_len, device, seed=i)
        region_attention(q, k, v, plan, kernel=AttentionKernel.FAST)
        counts.append(compiled_kernels())
    first, last = counts[0], counts[-1]
    later = None if first is None or last is None else last - first
    return {"requests": requests, "kernels_after_first": first, "compiled_later": later}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "editor-service", "bench"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def card_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu-{platform.machine()}"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def measure_case(
    shapes: Shapes,
    spans: tuple[TokenSpan, ...],
    hints: str,
    hint_tokens: int,
    rule_name: str,
    kernels: list[str],
    device: torch.device,
    *,
    warmup: int,
    iters: int,
) -> list[Row]:
    """Time unmasked SDPA and every kernel on one layout; errors against `dense` when it runs."""
    regions = len(spans)
    rule_set = {"default": default_rules, "locality": locality_rules}[rule_name](regions)
    main_first = MaskPlan(make_layout(shapes, spans, hint_tokens, hints_first=False), rule_set)
    hints_first = MaskPlan(make_layout(shapes, spans, hint_tokens, hints_first=True), rule_set)
    seq_len = main_first.seq_len
    q, k, v = make_qkv(shapes, seq_len, device, seed=regions)
    # hints-first is the same tokens in another order: permute once (in [B, S, H, D] storage, as diffusers
    # would build it) so the outputs can be compared.
    text = main_first.layout.text
    hint_len = sum(text.hint_tokens)
    order = torch.cat(
        [
            torch.arange(text.main_tokens, text.main_tokens + hint_len),
            torch.arange(text.main_tokens),
            torch.arange(text.total, seq_len),
        ]
    ).to(device)
    qh, kh, vh = (x.transpose(1, 2).index_select(1, order).transpose(1, 2) for x in (q, k, v))
    options = KernelOptions(flex_compile=device.type == "cuda")

    sdpa_ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v), device, warmup=warmup, iters=iters)
    allowed = main_first.allowed_fraction
    rows = [Row(hints, regions, rule_name, seq_len, allowed, "sdpa (unmasked)", "-", sdpa_ms, 1.0, None)]
    reference = region_attention(q, k, v, main_first, kernel=AttentionKernel.DENSE) if "dense" in kernels else None
    candidates: list[tuple[str, str, MaskPlan, tuple[torch.Tensor, ...]]] = []
    for kernel in kernels:
        candidates.append((kernel, "main|hints", main_first, (q, k, v)))
        if kernel == "fast":
            candidates.append((kernel, "hints|main", hints_first, (qh, kh, vh)))
    for kernel, order_name, plan, (qq, kk, vv) in candidates:

        def call(
            plan: MaskPlan = plan,
            qq: torch.Tensor = qq,
            kk: torch.Tensor = kk,
            vv: torch.Tensor = vv,
            kernel: str = kernel,
        ) -> torch.Tensor:
            return region_attention(qq, kk, vv, plan, kernel=kernel, options=options)

        out = call()
        error = None
        if reference is not None:
            if order_name == "hints|main":
                out = torch.empty_like(out).index_copy_(2, order, out)
            error = float((out.float() - reference.float()).abs().max())
        ms = time_ms(call, device, warmup=warmup, iters=iters)
        rows.append(Row(hints, regions, rule_name, seq_len, allowed, kernel, order_name, ms, ms / sdpa_ms, error))
        print(f"  {hints:7s} K={regions:<2d} {rule_name:8s} {kernel:5s} {order_name:10s} {ms:8.3f} ms", flush=True)
    return rows


def run(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    quick = args.quick or device.type != "cuda"
    if device.type != "cuda":
        logger.warning(
            "NO CUDA DEVICE: running tiny shapes on the CPU to check the script; the timings are meaningless"
        )
    shapes = CPU_TINY if quick else KONTEXT_1024
    ks = [int(k) for k in args.regions.split(",")] if args.regions else ([1, 2, 4] if quick else [1, 2, 4, 8, 16])
    kernels = args.kernels.split(",")
    warmup, iters = (1, 3) if quick else (args.warmup, args.iters)
    rng = random.Random(args.seed)
    rows: list[Row] = []
    builds: list[dict[str, object]] = []
    for hints in args.hints.split(","):
        hint_tokens = shapes.padded_hint if hints == "padded" else shapes.trimmed_hint
        for regions in ks:
            spans = random_spans(rng, shapes.grid, regions)
            for rule_name in args.rules.split(","):
                rows += measure_case(
                    shapes, spans, hints, hint_tokens, rule_name, kernels, device, warmup=warmup, iters=iters
                )
            build = build_times(shapes, spans, hint_tokens, device, repeats=5 if quick else 20, flex="flex" in kernels)
            builds.append({"hints": hints, "regions": regions, **build})

    recompiles = None
    if "flex" in kernels and not args.skip_recompiles:
        recompiles = recompiles_across_requests(shapes, device, regions=2, requests=3 if quick else 20, seed=args.seed)
    fast_compiles = None
    if "fast" in kernels and device.type == "cuda":
        fast_compiles = fast_compiles_across_requests(shapes, device, regions=2, requests=20, seed=args.seed)

    return {
        "card": card_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "commit": args.commit or git_commit(),
        "quick": quick,
        "shapes": asdict(shapes),
        "warmup": warmup,
        "iters": iters,
        "rows": [asdict(r) for r in rows],
        "builds": builds,
        "recompiles": recompiles,
        "fast_triton_compiles": fast_compiles,
    }


def check_kernels(device: torch.device, *, cases: int, seed: int) -> list[dict[str, object]]:
    """Every kernel against `dense` on random layouts and rule matrices, fp32 and bf16; prints the worst errors."""
    rng = random.Random(seed)
    kinds = ("default", "locality", "symmetric", "separate", "user")
    results = []
    for i in range(cases):
        regions = rng.choice((1, 2, 3, 5, 8, 16))
        grid = rng.choice((8, 16, 24))
        spans = random_spans(rng, grid, regions)
        text = TextLayout(
            rng.randint(1, 64), tuple(rng.randint(1, 40) for _ in range(regions)), hints_first=rng.random() < 0.5
        )
        layout = TokenLayout(text, Size(grid, grid), spans)
        kind = kinds[i % len(kinds)]
        if kind == "user":
            size = len(layout.groups)
            matrix = tuple(tuple(rng.random() < 0.7 for _ in range(size)) for _ in range(size))
            rules = AttentionRules(regions, False, matrix)
        elif kind == "locality":
            rules = locality_rules(regions)
        else:
            rules = default_rules(
                regions, symmetric_masking=kind == "symmetric", bboxes_attend_to_each_other=kind != "separate"
            )
        plan = MaskPlan(layout, rules)
        for dtype in (torch.float32, torch.bfloat16):
            generator = torch.Generator(device=device).manual_seed(i)
            q, k, v = (
                torch.randn(2, plan.seq_len, 4, 64, device=device, dtype=dtype, generator=generator).transpose(1, 2)
                for _ in range(3)
            )
            reference = region_attention(q.double(), k.double(), v.double(), plan, kernel=AttentionKernel.DENSE)
            for kernel in (AttentionKernel.DENSE, AttentionKernel.FAST, AttentionKernel.FLEX):
                out = region_attention(q, k, v, plan, kernel=kernel, options=KernelOptions(flex_compile=False))
                error = float((out.double() - reference).norm() / reference.norm())
                results.append(
                    {
                        "case": i,
                        "rules": kind,
                        "regions": regions,
                        "seq_len": plan.seq_len,
                        "dtype": str(dtype),
                        "kernel": kernel.value,
                        "rel_err": error,
                    }
                )
    for dtype in ("torch.float32", "torch.bfloat16"):
        for kernel in ("dense", "fast", "flex"):
            worst = max(r["rel_err"] for r in results if r["dtype"] == dtype and r["kernel"] == kernel)
            print(f"check {dtype:15s} {kernel:6s} worst relative error vs float64 dense: {worst:.2e}")
    return results


def print_table(result: dict[str, object]) -> None:
    print(f"\n{result['card']}  torch {result['torch']}  commit {result['commit']}  shapes {result['shapes']}")
    header = (
        f"{'hints':8s}{'K':>3s} {'rules':9s}{'S':>6s} {'allowed':>8s}  "
        f"{'kernel':16s}{'order':12s}{'ms':>9s}{'x sdpa':>8s}{'max err':>10s}"
    )
    print(header)
    print("-" * len(header))
    for r in result["rows"]:  # type: ignore[union-attr]
        err = "" if r["max_abs_err"] is None else f"{r['max_abs_err']:.2e}"
        print(
            f"{r['hints']:8s}{r['regions']:>3d} {r['rules']:9s}{r['seq_len']:>6d} {r['allowed']:>8.3f}  "
            f"{r['kernel']:16s}{r['order']:12s}{r['median_ms']:>9.3f}{r['vs_sdpa']:>8.3f}{err:>10s}"
        )
    print("\nbuild per request (ms, median):")
    for b in result["builds"]:  # type: ignore[union-attr]
        print("  " + "  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in b.items()))
    print(f"\nflex recompiles across requests with new boxes: {result['recompiles']}")
    print(f"fast: Triton kernels compiled across requests with new boxes: {result['fast_triton_compiles']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes (implied without CUDA)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/attention-<gpu-name>.json)")
    parser.add_argument("--regions", default="", help="comma-separated K values (default 1,2,4,8,16)")
    parser.add_argument("--hints", default="trimmed,padded", help="hint token modes: trimmed,padded")
    parser.add_argument("--rules", default="default,locality", help="rule sets: default,locality")
    parser.add_argument("--kernels", default="dense,flex,fast", help="kernels besides unmasked SDPA")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--iters", type=int, default=20, help="timed samples of 10 back-to-back calls each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--commit", default="", help="commit to record when git is not available")
    parser.add_argument("--skip-recompiles", action="store_true")
    parser.add_argument("--check", type=int, default=0, metavar="N", help="first check every kernel on N random cases")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    checks = None
    if args.check:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        checks = check_kernels(device, cases=args.check, seed=args.seed)
    result = run(args)
    result["checks"] = checks
    print_table(result)
    out = args.out or REPO / "bench" / "results" / f"attention-{slug(str(result['card']))}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
