"""The fast kernel's parts: log-sum-exp attention and merging, and schedules under every cost trade-off."""

from __future__ import annotations

import pytest
import torch

from replan_editor.attention import MaskPlan
from replan_editor.attention.block_schedule import CostModel, build_block_schedule, class_rectangles
from replan_editor.attention.fast import _chunked_attention, run_schedule
from replan_editor.attention.partial_attention import attention_with_lse, merge_partials

from .cases import kernel_cases, qkv

CASES = kernel_cases(12, seed=99)

#: Cost models that force each realisation: split keys into views, gather everything, views over hulls.
FORCING = {
    "split_keys": CostModel(call=0.0, row_copy=1e9, merge_row=0.0),
    "gather_all": CostModel(call=1e12, row_copy=0.0, merge_row=1e9),
    "hull_views": CostModel(call=1e12, row_copy=1e12, merge_row=1e9),
}


def reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    return torch.softmax(scores, dim=-1) @ v, torch.logsumexp(scores, dim=-1)


@pytest.mark.parametrize("backend", [None, "math", "cpu_flash"])
def test_attention_with_lse_returns_output_and_log_sum_exp(backend: str | None) -> None:
    q, k, v = qkv(13, seed=1)
    out, lse = attention_with_lse(q, k[:, :, :9], v[:, :, :9], backend=backend)
    expected_out, expected_lse = reference(q, k[:, :, :9], v[:, :, :9])
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, expected_lse, atol=1e-5, rtol=1e-5)


def test_merging_partials_over_disjoint_keys_equals_attention_over_their_union() -> None:
    q, k, v = qkv(20, seed=2)
    parts = [attention_with_lse(q, k[:, :, a:b], v[:, :, a:b]) for a, b in ((0, 3), (3, 15), (15, 20))]
    out, lse = merge_partials([p[0] for p in parts], [p[1] for p in parts])
    expected_out, expected_lse = reference(q, k, v)
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, expected_lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunks", [2, 4])
def test_key_chunked_attention_equals_one_call(chunks: int) -> None:
    q, k, v = qkv(16, seed=3)
    out, lse = _chunked_attention(q[:, :, :5], k, v, chunks)
    expected_out, expected_lse = reference(q[:, :, :5], k, v)
    torch.testing.assert_close(out, expected_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, expected_lse, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("costs", list(FORCING), ids=list(FORCING))
@pytest.mark.parametrize("case", CASES, ids=[c.description for c in CASES])
def test_schedule_matches_dense_under_every_cost_trade_off(costs: str, case: object) -> None:
    plan = MaskPlan(case.layout, case.rules)  # type: ignore[attr-defined]
    schedule = build_block_schedule(plan, FORCING[costs])
    q, k, v = qkv(plan.seq_len, seed=plan.seq_len)
    expected = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=plan.dense_mask())
    expected = expected.masked_fill(plan.empty_rows()[:, None], 0.0)
    torch.testing.assert_close(run_schedule(q, k, v, schedule), expected, atol=2e-5, rtol=2e-5)


def test_forcing_cost_models_produce_their_realisations() -> None:
    plans = [MaskPlan(c.layout, c.rules) for c in CASES]
    split = [build_block_schedule(p, FORCING["split_keys"]) for p in plans]
    gather = [build_block_schedule(p, FORCING["gather_all"]) for p in plans]
    assert all(b.keys.index is None for s in split for b in s.blocks)
    assert any(b.keys.index is not None for s in gather for b in s.blocks)
    assert all(
        b.queries.index is not None or b.queries.size == b.valid_rows.numel()
        for s in gather
        for b in s.blocks
        if b is not s.blocks[s.base or 0] or s.base is None
    )


@pytest.mark.parametrize("case", CASES[:9], ids=[c.description for c in CASES[:9]])
def test_rectangles_partition_the_allowed_class_cells_exactly(case: object) -> None:
    plan = MaskPlan(case.layout, case.rules)  # type: ignore[attr-defined]
    covered = torch.zeros_like(plan.class_allowed, dtype=torch.int64)
    rectangles = class_rectangles(plan.class_allowed, plan.query_class_sizes.tolist(), plan.key_class_sizes.tolist())
    for rows, keys in rectangles:
        for a in range(plan.num_query_classes):
            for b in range(plan.num_key_classes):
                if rows >> a & 1 and keys >> b & 1:
                    covered[a, b] += 1
    assert torch.equal(covered, plan.class_allowed.long())


def test_default_rules_with_hints_first_run_the_bulk_as_one_view_over_the_whole_sequence() -> None:
    from replan_common.geometry import Size, TokenSpan
    from replan_editor.attention import TextLayout, TokenLayout, default_rules
    from replan_editor.attention.block_schedule import GPU_COSTS

    layout = TokenLayout(
        TextLayout(64, (8, 8), hints_first=True), Size(32, 32), (TokenSpan(2, 10, 2, 10), TokenSpan(8, 20, 8, 30))
    )
    schedule = build_block_schedule(MaskPlan(layout, default_rules(2)), GPU_COSTS)
    base = schedule.blocks[schedule.base]  # type: ignore[index]
    assert (base.queries.start, base.queries.stop) == (0, layout.seq_len)
    assert (base.keys.start, base.keys.stop, base.keys.index) == (16, layout.seq_len, None)
    assert all(b.keys.index is None for b in schedule.blocks)  # every key set is a view
    assert len(schedule.blocks) == 4  # bulk, hint rows × latents, one per hint × its box
