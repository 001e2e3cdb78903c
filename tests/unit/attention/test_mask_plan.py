"""Mask plans: the compact class form equals memberᵀ·rules·member > 0, and plans are cached per request."""

from __future__ import annotations

import random

import pytest
import torch

from replan_common.geometry import Size, TokenSpan
from replan_editor.attention import (
    MaskPlan,
    MaskPlanCache,
    TextLayout,
    TokenLayout,
    default_rules,
    get_mask_plan,
    locality_rules,
)

from .cases import RULE_KINDS, brute_force_mask, random_layout, rules_of_kind


@pytest.mark.parametrize("seed", range(12))
def test_class_form_reproduces_the_group_rule_mask(seed: int) -> None:
    rng = random.Random(seed)
    layout = random_layout(rng, rng.choice((1, 2, 4, 9, 16)), qwen=seed % 3 == 0)
    rules = rules_of_kind(RULE_KINDS[seed % len(RULE_KINDS)], layout, rng)
    plan = MaskPlan(layout, rules)
    expected = brute_force_mask(layout, rules)
    assert torch.equal(plan.dense_mask(), expected)
    assert plan.allowed_pairs == int(expected.sum())
    assert plan.is_full == bool(expected.all())
    assert torch.equal(plan.empty_rows(), ~expected.any(dim=1))


def test_classes_are_few_even_with_many_overlapping_boxes() -> None:
    grid = Size(16, 16)
    spans = tuple(TokenSpan(i % 8, i % 8 + 6, i // 2, i // 2 + 5) for i in range(16))
    layout = TokenLayout(TextLayout(8, (2,) * 16), grid, spans)
    plan = MaskPlan(layout, locality_rules(16))
    assert plan.num_query_classes < 100 and plan.num_key_classes < 100
    assert torch.equal(plan.dense_mask(), brute_force_mask(layout, locality_rules(16)))


def test_no_regions_under_default_rules_allows_everything() -> None:
    layout = TokenLayout(TextLayout(5), Size(3, 2))
    assert MaskPlan(layout, default_rules(0)).is_full


def test_rules_for_another_region_count_are_rejected() -> None:
    layout = TokenLayout(TextLayout(5, (1,)), Size(3, 2), (TokenSpan(0, 1, 0, 1),))
    with pytest.raises(ValueError, match="do not fit"):
        MaskPlan(layout, default_rules(2))


def _layout(col1: int) -> TokenLayout:
    return TokenLayout(TextLayout(4, (2,)), Size(4, 4), (TokenSpan(0, 2, 0, col1),))


def test_cache_returns_the_same_plan_for_equal_layout_and_rules() -> None:
    cache = MaskPlanCache()
    first = cache.get(_layout(2), default_rules(1))
    assert cache.get(_layout(2), default_rules(1)) is first  # equal, not identical, inputs
    assert cache.get(_layout(3), default_rules(1)) is not first
    assert cache.get(_layout(2), locality_rules(1)) is not first


def test_default_cache_is_shared_by_get_mask_plan() -> None:
    assert get_mask_plan(_layout(1), locality_rules(1)) is get_mask_plan(_layout(1), locality_rules(1))


def test_cache_evicts_the_least_recently_used_plan() -> None:
    cache = MaskPlanCache(max_entries=2)
    a = cache.get(_layout(1), default_rules(1))
    cache.get(_layout(2), default_rules(1))
    assert cache.get(_layout(1), default_rules(1)) is a  # refreshes a
    cache.get(_layout(3), default_rules(1))  # evicts layout 2
    assert len(cache) == 2
    assert cache.get(_layout(1), default_rules(1)) is a


def test_kernel_artifacts_are_built_once_per_plan() -> None:
    plan = MaskPlan(_layout(2), default_rules(1))
    calls: list[int] = []
    first = plan.cached("thing", lambda: calls.append(1) or object())
    assert plan.cached("thing", lambda: calls.append(1) or object()) is first
    assert calls == [1]
    assert plan.dense_mask() is plan.dense_mask()
