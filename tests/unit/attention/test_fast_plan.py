"""The fast kernel's plan and its torch executor: exact coverage of the allowed pairs, and the dense result.

A fast plan is correct when, for every row, the keys of its owner rect plus its residual keys are exactly
the keys the mask allows (each once), every owned row may see every key of its rect, and rows that see
nothing are zeroed. These invariants are checked on random layouts and rule matrices under cost models
that force every realisation (no rects, several rects, extended or copied first rect), and the executor's
output is compared with the dense oracle.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from replan_common.geometry import Size, TokenSpan
from replan_editor.attention import (
    AttentionRules,
    MaskPlan,
    TextLayout,
    TokenLayout,
    default_rules,
    locality_rules,
)
from replan_editor.attention.fast import fast_plan_for, gather_rows, run_torch, scatter_rows_
from replan_editor.attention.fast_plan import CPU_COSTS, GPU_COSTS, FastCosts, FastPlan, build_fast_plan
from replan_editor.attention.partial_attention import attention_with_lse, merge_partials

from .cases import Case, kernel_cases, qkv

CASES = kernel_cases(24, seed=99)

#: Cost models that force each realisation of a plan.
FORCING: dict[str, FastCosts] = {
    "gpu": GPU_COSTS,
    "cpu": CPU_COSTS,
    "no_rects": replace(GPU_COSTS, min_rect_rows=10**9),
    "one_rect": replace(CPU_COSTS, max_rects=1),
    "always_extend": replace(CPU_COSTS, row_copy=1e12),
    "never_extend": replace(CPU_COSTS, row_copy=0.0),
}


def check_covers_exactly(plan: MaskPlan, fast: FastPlan) -> None:
    """Every row: rect keys (if owned) ∪ residual keys == allowed keys, disjointly; zero rows see nothing."""
    dense = plan.dense_mask().numpy()
    seq_len = plan.seq_len
    seen = np.zeros(seq_len, dtype=np.int64)
    for group in fast.groups:
        assert np.all(np.diff(group.rows) > 0) and np.all(np.diff(group.keys) > 0)
        covered = np.zeros(seq_len, dtype=np.bool_)
        if group.owner >= 0:
            rect = fast.rects[group.owner]
            assert rect.q0 <= group.rows.min() and group.rows.max() < rect.q1
            covered[rect.k0 : rect.k1] = True
        assert not covered[group.keys].any()  # residual keys are not in the rect: nothing counted twice
        covered[group.keys] = True
        assert (dense[group.rows] == covered[None, :]).all()
        seen[group.rows] += 1
    seen[fast.zero_rows] += 1
    assert not dense[fast.zero_rows].any()
    if fast.out_from_first:  # rows in no group are the first rect's, and see exactly its keys
        first = fast.rects[0]
        assert (first.q0, first.q1) == (0, seq_len)
        rest = np.flatnonzero(seen == 0)
        expected = np.zeros(seq_len, dtype=np.bool_)
        expected[first.k0 : first.k1] = True
        assert (dense[rest] == expected[None, :]).all()
        seen[rest] += 1
    assert (seen == 1).all()


def dense_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: MaskPlan) -> torch.Tensor:
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=plan.dense_mask(q.device))
    return out.masked_fill(plan.empty_rows(q.device)[:, None], 0.0)


@pytest.mark.parametrize("costs", list(FORCING), ids=list(FORCING))
@pytest.mark.parametrize("case", CASES, ids=[c.description for c in CASES])
def test_plan_covers_every_allowed_pair_once_and_runs_to_the_dense_result(costs: str, case: Case) -> None:
    plan = MaskPlan(case.layout, case.rules)
    fast = build_fast_plan(plan, FORCING[costs])
    check_covers_exactly(plan, fast)
    q, k, v = qkv(plan.seq_len, seed=plan.seq_len)
    torch.testing.assert_close(run_torch(q, k, v, fast), dense_reference(q, k, v, plan), atol=2e-5, rtol=2e-5)


def test_forcing_cost_models_produce_their_realisations() -> None:
    plans = [MaskPlan(c.layout, c.rules) for c in CASES]
    built = {name: [build_fast_plan(p, costs) for p in plans] for name, costs in FORCING.items()}
    assert all(not f.rects for f in built["no_rects"])
    assert all(len(f.rects) <= 1 for f in built["one_rect"])
    assert any(len(f.rects) > 1 for f in built["cpu"])
    assert all(f.out_from_first for f in built["always_extend"] if f.rects)
    assert any(not f.out_from_first for f in built["never_extend"])
    assert any(g.owner < 0 for f in built["cpu"] for g in f.groups)
    assert any(g.owner >= 0 and not g.keys.size for f in built["never_extend"] for g in f.groups)  # copied rows


@pytest.mark.parametrize("regions", [1, 2, 5, 16])
def test_default_rules_with_hints_first_are_the_plain_attention_plus_hint_rows_and_box_hints(regions: int) -> None:
    spans = tuple(TokenSpan(i % 20, i % 20 + 6, (3 * i) % 25, (3 * i) % 25 + 7) for i in range(regions))
    layout = TokenLayout(TextLayout(64, (4,) * regions, hints_first=True), Size(32, 32), spans)
    plan = MaskPlan(layout, default_rules(regions))
    fast = build_fast_plan(plan, GPU_COSTS)
    hints, seq_len = 4 * regions, layout.seq_len
    # [main | latents] × [main | latents], over every row: its output is the result buffer.
    assert (fast.rects[0].k0, fast.rects[0].k1) == (hints, seq_len)
    assert fast.out_from_first == ((fast.rects[0].q0, fast.rects[0].q1) == (0, seq_len))
    # What is left: hint rows (their hint, and the latents unless a rect holds them) and box rows (their
    # hints); the main prompt's rows and the background's need nothing beyond the first rect.
    for group in (g for g in fast.groups if g.keys.size):
        if group.rows.max() < hints:
            assert group.keys.min() < hints
        else:
            assert group.rows.min() >= hints + 64 and group.keys.max() < hints
    assert sum(int(g.rows.size) for g in fast.groups if g.keys.size and g.rows.min() >= hints) < 2 * layout.grid_tokens
    check_covers_exactly(plan, fast)


@pytest.mark.parametrize("costs", list(FORCING), ids=list(FORCING))
def test_rows_that_may_see_nothing_are_zero_rows(costs: str) -> None:
    layout = TokenLayout(TextLayout(3, (2,), hints_first=True), Size(3, 3), (TokenSpan(0, 2, 0, 2),))
    matrix = [list(row) for row in default_rules(1).allowed]
    matrix[1] = [False] * len(matrix)  # Hint 1 sees nothing
    plan = MaskPlan(layout, AttentionRules(1, False, tuple(tuple(r) for r in matrix)))
    fast = build_fast_plan(plan, FORCING[costs])
    assert fast.zero_rows.tolist() == list(layout.text.hint_range(1))
    check_covers_exactly(plan, fast)
    q, k, v = qkv(plan.seq_len, seed=5)
    torch.testing.assert_close(run_torch(q, k, v, fast), dense_reference(q, k, v, plan), atol=2e-5, rtol=2e-5)


def test_locality_rules_keep_noise_background_rows_off_the_noise_boxes() -> None:
    spans = (TokenSpan(2, 10, 3, 12), TokenSpan(5, 14, 8, 20))
    layout = TokenLayout(TextLayout(32, (8, 8), hints_first=True), Size(24, 24), spans)
    plan = MaskPlan(layout, locality_rules(2))
    for costs in FORCING.values():
        check_covers_exactly(plan, build_fast_plan(plan, costs))


def test_fast_plans_are_cached_per_mask_plan_and_device_kind() -> None:
    plan = MaskPlan(CASES[0].layout, CASES[0].rules)
    cpu = torch.device("cpu")
    assert fast_plan_for(plan, cpu) is fast_plan_for(plan, cpu)


@pytest.mark.parametrize("backend", [None, "math", "cpu_flash"])
def test_attention_with_lse_returns_output_and_log_sum_exp(backend: str | None) -> None:
    q, k, v = qkv(13, seed=1)
    out, lse = attention_with_lse(q, k[:, :, :9], v[:, :, :9], backend=backend)
    scores = (q @ k[:, :, :9].transpose(-1, -2)) / q.shape[-1] ** 0.5
    torch.testing.assert_close(out, torch.softmax(scores, dim=-1) @ v[:, :, :9], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), atol=1e-5, rtol=1e-5)


def test_merging_partials_over_disjoint_keys_equals_attention_over_their_union() -> None:
    q, k, v = qkv(20, seed=2)
    parts = [attention_with_lse(q, k[:, :, a:b], v[:, :, a:b]) for a, b in ((0, 3), (3, 15), (15, 20))]
    out, lse = merge_partials([p[0] for p in parts], [p[1] for p in parts])
    expected_out, expected_lse = attention_with_lse(q, k, v, backend="math")
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, expected_lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("seq_major", [True, False], ids=["BSHD-storage", "BHSD-storage"])
def test_row_gather_and_scatter_work_in_either_storage_order(seq_major: bool) -> None:
    base = torch.randn(2, 9, 3, 4) if seq_major else torch.randn(2, 3, 9, 4).transpose(1, 2)
    x = base.transpose(1, 2)  # [B, H, S, D] view
    index = torch.tensor([1, 4, 8])
    torch.testing.assert_close(gather_rows(x, index), x[:, :, index])
    rows = torch.randn(2, 3, 3, 4)
    expected = x.clone()
    expected[:, :, index] = rows
    scatter_rows_(x, index, rows)
    torch.testing.assert_close(x, expected)
