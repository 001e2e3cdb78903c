"""Benchmark: host time to build a request's region-attention plan at FLUX.1 Kontext 1024² shapes.

DESIGN §5 asks for the mask/plan build to take ≤ 5 ms per request after warm-up. This is pure host work
(Python and CPU torch), so it runs anywhere and needs no GPU. For K ∈ {1, 2, 4, 8, 16} regions, hints
trimmed to 64 tokens or padded to 512, default and locality rules, it builds for `--requests` requests
with new random boxes each (after `--warmup` requests that are not timed), as a new request does:

- `layout`: the `TokenLayout` (4096 noise + 4096 image tokens on a 64×64 grid, main prompt 512 tokens);
- `rules`: the rule matrix;
- `mask_plan`: `MaskPlan(layout, rules)` (the plan cache bypassed, as for new boxes);
- `fast_plan`: `build_fast_plan(plan, GPU_COSTS)` and its Triton work lists on the device
  (`fast_triton.build_work`), what the `fast` kernel builds on CUDA (here the device is the CPU);
- `flex_block_mask`: `flex.build_block_mask(plan, device)` (tile classes and the BlockMask).

It prints the median milliseconds per stage and `plan+schedule` (mask plan + fast plan: the DESIGN target)
per config, and a digest of every built fast plan (its rects, row groups, zero rows), so two runs on
different code can prove they built exactly the same plans. Text is ordered `[hints | main]`, as the
editors order it. Results go, under `--label`, into
`bench/results/plan_build-<host>.json` (other labels in that file are kept, so a `before` and an `after`
run sit side by side). Run from the repository root::

    PYTHONPATH=services:editor-service python bench/plan_build.py --label after

Not collected by pytest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch

# Same random boxes as the kernel bench (a sibling script: `python bench/plan_build.py` puts bench/ on the path).
from attention import random_spans

from replan_common.geometry import Size
from replan_editor.attention import AttentionRules, MaskPlan, TextLayout, TokenLayout, default_rules, locality_rules
from replan_editor.attention.fast_plan import GPU_COSTS, FastPlan, build_fast_plan
from replan_editor.attention.fast_triton import build_work
from replan_editor.attention.flex import build_block_mask
from replan_editor.attention.options import TritonConfig

REPO = Path(__file__).resolve().parent.parent
GRID = 64
MAIN_TOKENS = 512
HINT_TOKENS = {"trimmed": 64, "padded": 512}
RULES: dict[str, Callable[[int], AttentionRules]] = {"default": default_rules, "locality": locality_rules}
STAGES = ("layout", "rules", "mask_plan", "fast_plan", "flex_block_mask")

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - t0) * 1e3


def plan_digest(fast: FastPlan, digest: hashlib._Hash) -> None:
    """Feed every rect, row group and zero row of `fast` into `digest` (equal digests ⇔ identical plans)."""
    digest.update(repr((fast.seq_len, fast.rects, fast.out_from_first, len(fast.groups))).encode())
    for group in fast.groups:
        digest.update(f"{group.owner}:{group.rows.size}:{group.keys.size}".encode())
        digest.update(group.rows.tobytes() + group.keys.tobytes())
    digest.update(fast.zero_rows.tobytes())


def _fast_plan(plan: MaskPlan, device: torch.device) -> FastPlan:
    fast = build_fast_plan(plan, GPU_COSTS)
    build_work(fast, device, TritonConfig())
    return fast


def measure(
    hints: str, regions: int, rule_name: str, *, requests: int, warmup: int, seed: int, flex: bool
) -> dict[str, object]:
    """Median stage times over `requests` requests with new random boxes, after `warmup` untimed ones."""
    rng = random.Random(f"{seed}-{hints}-{regions}-{rule_name}")
    device = torch.device("cpu")
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    samples["plan+schedule"] = []
    digest = hashlib.sha256()
    for i in range(warmup + requests):
        spans = random_spans(rng, GRID, regions)
        text = TextLayout(MAIN_TOKENS, (HINT_TOKENS[hints],) * regions, hints_first=True)
        layout, layout_ms = timed(lambda text=text, spans=spans: TokenLayout(text, Size(GRID, GRID), spans))
        rules, rules_ms = timed(lambda: RULES[rule_name](regions))
        plan, plan_ms = timed(lambda layout=layout, rules=rules: MaskPlan(layout, rules))
        fast, fast_ms = timed(lambda plan=plan: _fast_plan(plan, device))
        flex_ms = timed(lambda plan=plan: build_block_mask(plan, device))[1] if flex else float("nan")
        if i < warmup:
            continue
        plan_digest(fast, digest)
        for stage, ms in zip(STAGES, (layout_ms, rules_ms, plan_ms, fast_ms, flex_ms), strict=True):
            samples[stage].append(ms)
        samples["plan+schedule"].append(plan_ms + fast_ms)
    medians = {stage: statistics.median(times) for stage, times in samples.items()}
    return {
        "hints": hints,
        "regions": regions,
        "rules": rule_name,
        "seq_len": plan.seq_len,
        "median_ms": medians,
        "max_plan_schedule_ms": max(samples["plan+schedule"]),
        "plan_digest": digest.hexdigest()[:16],
    }


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "editor-service/replan_editor/attention"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        return out.stdout.strip()[:12] + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    model = fields.get("Model name", platform.machine()).strip()
    return f"{model} ({fields.get('CPU(s)', '?').strip()} CPUs)"


def print_rows(rows: list[dict[str, object]]) -> None:
    header = f"{'hints':8s}{'K':>3s} {'rules':9s}{'S':>6s}" + "".join(f"{s:>16s}" for s in STAGES) + "   plan+schedule"
    print(header)
    print("-" * len(header))
    for r in rows:
        medians: dict[str, float] = r["median_ms"]  # type: ignore[assignment]
        print(
            f"{r['hints']:8s}{r['regions']:>3d} {r['rules']:9s}{r['seq_len']:>6d}"
            + "".join(f"{medians[s]:>16.3f}" for s in STAGES)
            + f"{medians['plan+schedule']:>16.3f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--label", default="current", help="name of this run in the JSON (e.g. before, after)")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/plan_build-cpu.json)")
    parser.add_argument("--regions", default="1,2,4,8,16", help="comma-separated K values")
    parser.add_argument("--hints", default="trimmed,padded", help="hint token modes: trimmed,padded")
    parser.add_argument("--rules", default="default,locality", help="rule sets: default,locality")
    parser.add_argument("--requests", type=int, default=20, help="timed requests per config")
    parser.add_argument("--warmup", type=int, default=2, help="untimed requests per config first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-flex", action="store_true", help="skip the flex BlockMask stage")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--commit", default="", help="commit of the measured code, when not this checkout's HEAD")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    rows = []
    for hints in args.hints.split(","):
        for regions in (int(k) for k in args.regions.split(",")):
            for rule_name in args.rules.split(","):
                rows.append(
                    measure(
                        hints,
                        regions,
                        rule_name,
                        requests=args.requests,
                        warmup=args.warmup,
                        seed=args.seed,
                        flex=not args.no_flex,
                    )
                )
                r = rows[-1]
                print(
                    f"  {hints:7s} K={regions:<2d} {rule_name:8s} plan+schedule "
                    f"{r['median_ms']['plan+schedule']:7.2f} ms",  # type: ignore[index]
                    flush=True,
                )
    run = {
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "commit": args.commit or git_commit(),
        "requests": args.requests,
        "warmup": args.warmup,
        "seed": args.seed,
        "shapes": {"grid": GRID, "main_tokens": MAIN_TOKENS, "hint_tokens": HINT_TOKENS},
        "rows": rows,
    }
    print(f"\n{args.label}: {run['cpu']}  torch {run['torch']}  commit {run['commit']}  (median ms per request)")
    print_rows(rows)
    if not args.no_write:
        out = args.out or REPO / "bench" / "results" / "plan_build-cpu.json"
        existing = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
        existing.setdefault("runs", {})[args.label] = run
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(existing, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {out} [{args.label}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
