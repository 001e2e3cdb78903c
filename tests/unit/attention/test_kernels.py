"""Every kernel computes the dense oracle's function, on random layouts, rules and inputs (fp32, CPU)."""

from __future__ import annotations

import warnings
import zlib

import pytest
import torch
import torch.nn.functional as F

from replan_common.geometry import Size, TokenSpan
from replan_editor.attention import (
    AttentionKernel,
    AttentionRules,
    KernelOptions,
    MaskPlan,
    TextLayout,
    TokenLayout,
    default_rules,
    region_attention,
)
from replan_editor.attention.fast import fast_plan_for

from .cases import Case, kernel_cases, qkv

CASES = kernel_cases(36, seed=1234)
TOLERANCE = 2e-5


@pytest.fixture(autouse=True)
def _quiet_eager_flex() -> None:
    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")


# Eager FlexAttention on CPU is slow: every fifth case (5 and 6 are coprime, so every rule kind is covered).
KERNEL_CASES = [(AttentionKernel.FAST, c) for c in CASES] + [(AttentionKernel.FLEX, c) for c in CASES[::5]]


@pytest.mark.parametrize(("kernel", "case"), KERNEL_CASES, ids=[f"{k.value}-{c.description}" for k, c in KERNEL_CASES])
def test_kernel_matches_dense_oracle(kernel: AttentionKernel, case: Case) -> None:
    plan = MaskPlan(case.layout, case.rules)
    q, k, v = qkv(plan.seq_len, seed=zlib.crc32(case.description.encode()))
    expected = region_attention(q, k, v, plan, kernel=AttentionKernel.DENSE)
    got = region_attention(q, k, v, plan, kernel=kernel, options=KernelOptions(flex_compile=False))
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=TOLERANCE, rtol=TOLERANCE)


def test_dense_oracle_matches_explicit_softmax_over_allowed_keys() -> None:
    case = CASES[1]
    plan = MaskPlan(case.layout, case.rules)
    q, k, v = qkv(plan.seq_len, seed=7)
    mask = plan.dense_mask()
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1).nan_to_num(0.0)
    torch.testing.assert_close(region_attention(q, k, v, plan, kernel="dense"), weights @ v, atol=1e-5, rtol=1e-5)


def test_cases_exercise_several_rects_copied_and_unowned_rows() -> None:
    plans = [fast_plan_for(MaskPlan(c.layout, c.rules), torch.device("cpu")) for c in CASES]
    assert any(len(p.rects) > 1 for p in plans)
    assert any(p.out_from_first for p in plans) and any(not p.out_from_first for p in plans)
    assert any(g.owner < 0 for p in plans for g in p.groups)
    assert any(g.owner >= 0 and g.keys.size for p in plans for g in p.groups)


@pytest.mark.parametrize("kernel", list(AttentionKernel))
def test_empty_plan_is_the_plain_sdpa_call_bit_for_bit(kernel: AttentionKernel) -> None:
    layout = TokenLayout(TextLayout(6), Size(5, 4))
    plan = MaskPlan(layout, default_rules(0))
    q, k, v = qkv(plan.seq_len, seed=3, dim=16)
    plain = F.scaled_dot_product_attention(q, k, v)
    assert torch.equal(region_attention(q, k, v, plan, kernel=kernel), plain)
    assert torch.equal(region_attention(q, k, v, None, kernel=kernel), plain)


@pytest.mark.parametrize("kernel", [AttentionKernel.DENSE, AttentionKernel.FAST, AttentionKernel.FLEX])
def test_queries_with_no_allowed_key_get_zeros(kernel: AttentionKernel) -> None:
    layout = TokenLayout(TextLayout(3, (2,)), Size(3, 3), (TokenSpan(0, 2, 0, 2),))
    base = default_rules(1)
    matrix = [list(row) for row in base.allowed]
    matrix[1] = [False] * len(matrix)  # Hint 1 sees nothing
    rules = AttentionRules(1, False, tuple(tuple(r) for r in matrix))
    plan = MaskPlan(layout, rules)
    q, k, v = qkv(plan.seq_len, seed=5)
    out = region_attention(q, k, v, plan, kernel=kernel, options=KernelOptions(flex_compile=False))
    hint_rows = list(layout.text.hint_range(1))
    assert torch.equal(out[:, :, hint_rows], torch.zeros_like(out[:, :, hint_rows]))
    others = [i for i in range(plan.seq_len) if i not in hint_rows]
    assert bool((out[:, :, others].abs().sum(dim=-1) > 0).all())


def test_kernel_names_are_accepted_as_strings_and_validated() -> None:
    case = CASES[0]
    plan = MaskPlan(case.layout, case.rules)
    q, k, v = qkv(plan.seq_len, seed=11)
    torch.testing.assert_close(
        region_attention(q, k, v, plan, kernel="fast"), region_attention(q, k, v, plan, kernel="dense")
    )
    with pytest.raises(ValueError):
        region_attention(q, k, v, plan, kernel="magic")


def test_wrong_sequence_length_is_rejected() -> None:
    case = CASES[0]
    plan = MaskPlan(case.layout, case.rules)
    q, k, v = qkv(plan.seq_len + 1, seed=11)
    with pytest.raises(ValueError, match="does not match the mask plan"):
        region_attention(q, k, v, plan, kernel="fast")


def test_flex_cases_cover_every_rule_kind() -> None:
    from .cases import RULE_KINDS

    kinds = {c.description.split("-")[0] for k, c in KERNEL_CASES if k is AttentionKernel.FLEX}
    assert kinds == set(RULE_KINDS)


@pytest.mark.parametrize("rules", ["default", "locality"])
def test_tile_built_block_mask_matches_create_block_mask_and_dense(rules: str) -> None:
    import random

    from torch.nn.attention.flex_attention import create_block_mask

    from replan_editor.attention import locality_rules
    from replan_editor.attention.flex import BLOCK_SIZE, build_block_mask

    from .cases import random_span

    rng = random.Random(5)
    grid = Size(20, 20)
    layout = TokenLayout(TextLayout(40, (30, 30, 30)), grid, tuple(random_span(rng, grid) for _ in range(3)))
    plan = MaskPlan(layout, default_rules(3) if rules == "default" else locality_rules(3))
    assert plan.seq_len > 6 * BLOCK_SIZE  # several tiles: empty, full and partial ones
    dense = plan.dense_mask()

    def mask_mod(b: torch.Tensor, h: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return dense[q, k]

    ours = build_block_mask(plan, torch.device("cpu"))
    reference = create_block_mask(mask_mod, None, None, plan.seq_len, plan.seq_len, device="cpu", BLOCK_SIZE=BLOCK_SIZE)
    assert torch.equal(ours.to_dense(), reference.to_dense())  # type: ignore[attr-defined]
    q, k, v = qkv(plan.seq_len, seed=9, batch=1)
    torch.testing.assert_close(
        region_attention(q, k, v, plan, kernel="flex", options=KernelOptions(flex_compile=False)),
        region_attention(q, k, v, plan, kernel="dense"),
        atol=TOLERANCE,
        rtol=TOLERANCE,
    )
