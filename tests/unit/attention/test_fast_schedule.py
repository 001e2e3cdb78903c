"""The fast kernel's parts: log-sum-exp attention and merging, and schedules under every cost trade-off."""

from __future__ import annotations

import pytest
import torch

from replan_editor.attention import MaskPlan
from replan_editor.attention.block_schedule import CostModel, build_block_schedule, class_rectangles
from replan_editor.attention.fast import gather_rows, merge_rows_, run_schedule, scatter_rows_
from replan_editor.attention.partial_attention import attention_with_lse, merge_partials

from .cases import kernel_cases, qkv

CASES = kernel_cases(12, seed=99)

#: Cost models that force each realisation: split keys into views, gather, hull views with key masks,
#: residuals as one masked call, and residuals cut into unmasked rectangles instead.
FORCING = {
    "split_keys": CostModel(call=0.0, row_copy=1e9, merge_row=0.0),
    "gather_all": CostModel(call=1e12, row_copy=0.0, merge_row=1e9, max_mask=0),
    "hull_views": CostModel(call=1e12, row_copy=1e12, merge_row=1e9, key_mask=True),
    "masked_residual": CostModel(call=1e9, row_copy=1.0, merge_row=1e9, masked_pair=1.0),
    "no_masks": CostModel(call=1.0, row_copy=1.0, merge_row=1.0, max_mask=0),
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


def test_attention_with_bias_masks_keys_and_skips_them_in_the_lse() -> None:
    q, k, v = qkv(6, seed=4)
    bias = torch.zeros(6, 6)
    bias[:, 4:] = -torch.inf
    bias[0, 1] = -torch.inf
    out, lse = attention_with_lse(q, k, v, bias=bias)
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5 + bias
    torch.testing.assert_close(out, torch.softmax(scores, dim=-1) @ v, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, torch.logsumexp(scores, dim=-1), atol=1e-5, rtol=1e-5)


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
    schedules = {name: [build_block_schedule(p, costs) for p in plans] for name, costs in FORCING.items()}
    blocks = {name: [b for s in found for b in s.blocks] for name, found in schedules.items()}
    assert all(b.keys.index is None for b in blocks["split_keys"])
    assert any(b.keys.index is not None for b in blocks["gather_all"])
    assert all(b.mask is None for b in blocks["gather_all"])
    assert any(b.mask is not None and b.mask.shape[0] == 1 for b in blocks["hull_views"])
    assert any(b.mask is not None and b.mask.shape[0] > 1 for b in blocks["masked_residual"])
    assert all(b.mask is None for b in blocks["no_masks"])
    assert any(s.merged_rows for s in schedules["no_masks"])


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


@pytest.mark.parametrize("regions", [1, 2, 5, 16])
def test_default_rules_need_three_calls_and_one_unmasked_bulk_view_whatever_the_region_count(regions: int) -> None:
    from replan_common.geometry import Size, TokenSpan
    from replan_editor.attention import TextLayout, TokenLayout, default_rules
    from replan_editor.attention.block_schedule import GPU_COSTS

    spans = tuple(TokenSpan(i % 20, i % 20 + 6, (3 * i) % 25, (3 * i) % 25 + 7) for i in range(regions))
    layout = TokenLayout(TextLayout(64, (8,) * regions, hints_first=True), Size(32, 32), spans)
    schedule = build_block_schedule(MaskPlan(layout, default_rules(regions)), GPU_COSTS)
    hints = 8 * regions
    base = schedule.blocks[schedule.base]  # type: ignore[index]
    assert (base.queries.start, base.queries.stop, base.queries.index) == (0, layout.seq_len, None)
    assert (base.keys.start, base.keys.stop, base.keys.index, base.mask) == (hints, layout.seq_len, None, None)
    assert len(schedule.blocks) == 3  # bulk; hint rows × (hints, latents); box rows × hints
    assert all(b.keys.index is None for b in schedule.blocks)  # every key set is a view


def test_merging_rows_in_place_equals_attention_over_both_key_sets() -> None:
    q, k, v = qkv(12, seed=3)
    out, lse = attention_with_lse(q, k[:, :, :7], v[:, :, :7])
    part, part_lse = attention_with_lse(q[:, :, [2, 5, 9]], k[:, :, 7:], v[:, :, 7:])
    rows = torch.tensor([2, 5, 9])
    merge_rows_(out, lse, rows, part, part_lse, torch.arange(3))
    expected_out, expected_lse = reference(q, k, v)
    torch.testing.assert_close(out[:, :, rows], expected_out[:, :, rows], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse[:, :, rows], expected_lse[:, :, rows], atol=1e-5, rtol=1e-5)
    untouched = [0, 1, 3, 4, 6, 7, 8, 10, 11]
    torch.testing.assert_close(out[:, :, untouched], reference(q, k[:, :, :7], v[:, :, :7])[0][:, :, untouched])


@pytest.mark.parametrize("case", CASES[:6], ids=[c.description for c in CASES[:6]])
def test_moving_a_schedule_keeps_every_index_and_mask(case: object) -> None:
    plan = MaskPlan(case.layout, case.rules)  # type: ignore[attr-defined]
    schedule = build_block_schedule(plan, FORCING["masked_residual"])
    moved = schedule.to(torch.device("cpu"))

    def tensors(s: object) -> list[object]:
        out: list[object] = []
        for b in s.blocks:  # type: ignore[attr-defined]
            out += [b.queries.index, b.queries.start, b.keys.index, b.keys.stop, b.valid_rows, b.valid_pos, b.mask]
        for p in s.placements:  # type: ignore[attr-defined]
            out += [p.block, p.copy_src, p.copy_dst, p.merge_src, p.merge_dst]
        return [*out, s.zero_rows, s.base]  # type: ignore[attr-defined]

    for a, b in zip(tensors(schedule), tensors(moved), strict=True):
        if isinstance(a, torch.Tensor):
            assert isinstance(b, torch.Tensor) and torch.equal(a, b) and a.dtype == b.dtype
        else:
            assert a == b
