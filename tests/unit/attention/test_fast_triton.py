"""The Triton residual kernels against the dense oracle, run on the CPU by Triton's interpreter.

`TRITON_INTERPRET=1` (set by `tests/conftest.py` on machines without a GPU, before anything imports Triton)
makes `@triton.jit` kernels run in NumPy on CPU tensors: the same kernel code that runs on a GPU, program by
program. Shapes are small (the interpreter runs each program in Python);
the cases still reach every path: direct merges with and without an owner rect, copies, split key lists and
their combine, several rects, zero rows, a head dim that is not a power of two, fp32 (`ieee` dots).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

from replan_editor.attention import AttentionKernel, KernelOptions, MaskPlan, region_attention
from replan_editor.attention.fast_plan import CPU_COSTS, GPU_COSTS, build_fast_plan
from replan_editor.attention.fast_triton import build_work, run_triton
from replan_editor.attention.options import TritonConfig

from .cases import Case, kernel_cases, qkv
from .test_fast_plan import FORCING, dense_reference

CASES = kernel_cases(12, seed=2024)
#: Where the kernels run: the GPU when there is one (compiled), else the CPU (interpreted).
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
CONFIGS = {
    "default": TritonConfig(),
    "split": TritonConfig(block_m=16, block_n=16, chunk_keys=16),  # long key lists split, then combined
    "overlap": TritonConfig(block_m=32, overlap=True),  # every residual as a one-chunk split
}


@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
@pytest.mark.parametrize("case", CASES, ids=[c.description for c in CASES])
def test_triton_residual_matches_dense(case: Case, config: str) -> None:
    plan = MaskPlan(case.layout, case.rules)
    q, k, v = (x.to(DEVICE) for x in qkv(plan.seq_len, seed=plan.seq_len, batch=1, heads=2, dim=16))
    expected = dense_reference(q, k, v, plan)
    for costs in (GPU_COSTS, CPU_COSTS, FORCING["no_rects"], FORCING["never_extend"]):
        fast = build_fast_plan(plan, costs)
        out = run_triton(q, k, v, fast, CONFIGS[config])
        torch.testing.assert_close(out, expected, atol=2e-5, rtol=2e-5)


def test_the_cases_reach_every_launch_kind() -> None:
    kinds: set[str] = set()
    for case in CASES:
        plan = MaskPlan(case.layout, case.rules)
        for costs in (GPU_COSTS, CPU_COSTS, FORCING["no_rects"], FORCING["never_extend"]):
            for config in CONFIGS.values():
                work = build_work(build_fast_plan(plan, costs), torch.device("cpu"), config)
                kinds |= {"split"} if work.split is not None else set()
                kinds |= {f"direct-owner{'<0' if d.owner < 0 else '>=0'}" for d in work.direct}
                kinds |= {f"combine-owner{'<0' if c.owner < 0 else '>=0'}" for c in work.combine}
    assert kinds == {"split", "direct-owner<0", "direct-owner>=0", "combine-owner<0", "combine-owner>=0"}


@pytest.mark.parametrize("dim", [12, 64])
def test_head_dims_that_are_not_powers_of_two_and_batches(dim: int) -> None:
    case = CASES[3]
    plan = MaskPlan(case.layout, case.rules)
    q, k, v = (x.to(DEVICE) for x in qkv(plan.seq_len, seed=7, batch=2, heads=3, dim=dim))
    out = region_attention(q, k, v, plan, kernel=AttentionKernel.FAST, options=KernelOptions(fast_residual="triton"))
    torch.testing.assert_close(out, dense_reference(q, k, v, plan), atol=2e-5, rtol=2e-5)
    assert out.device == DEVICE


def test_work_lists_tile_every_group_row_and_split_every_key_list_exactly() -> None:
    config = replace(CONFIGS["split"], chunk_keys=32)
    for case in CASES:
        fast = build_fast_plan(MaskPlan(case.layout, case.rules), FORCING["no_rects"])
        work = build_work(fast, torch.device("cpu"), config)
        rows = work.row_index.tolist()
        expected_rows = sorted(r for g in fast.groups for r in g.rows.tolist())
        tiles = [] if work.split is None else work.split.table.T.tolist()
        tiles += [t for d in work.direct for t in d.table.T.tolist()]
        covered: dict[int, list[tuple[int, int]]] = {}
        for row0, count, key0, keys, _slot in tiles:
            assert 0 < count <= config.block_m
            for r in rows[row0 : row0 + count]:
                covered.setdefault(r, []).append((key0, keys))
        assert sorted(covered) == expected_rows
        offset = 0
        for group in fast.groups:  # the chunks of every row of a group partition its key list
            for r in group.rows.tolist():
                spans = sorted(covered[r])
                assert spans[0][0] == offset and sum(n for _, n in spans) == group.keys.size
                assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(spans))
            offset += group.keys.size
