"""The rule switch: custom rules for steps [0, switch_at), default rules after."""

from __future__ import annotations

import pytest

from replan_common.errors import InvalidRules
from replan_editor.attention import RuleSchedule, default_rules, locality_rules, switch_step


@pytest.mark.parametrize(
    ("ratio", "steps", "expected"),
    [(0.0, 28, 0), (0.5, 28, 14), (0.5, 50, 25), (0.05, 28, 1), (0.7, 50, 35), (1.0, 28, 28), (3, 28, 3), (7.9, 50, 7)],
)
def test_switch_step_is_ratio_of_steps_or_an_absolute_step_above_one(ratio: float, steps: int, expected: int) -> None:
    assert switch_step(ratio, steps) == expected


@pytest.mark.parametrize(("ratio", "custom_steps"), [(0.0, 0), (0.5, 5), (1.0, 10), (4.0, 4), (25.0, 10)])
def test_schedule_uses_custom_rules_before_the_switch_and_default_after(ratio: float, custom_steps: int) -> None:
    custom, default = locality_rules(2), default_rules(2)
    schedule = RuleSchedule.from_ratio(custom, default, ratio=ratio, num_steps=10)
    phases = [schedule.rules_for_step(step) for step in range(10)]
    assert phases == [custom] * custom_steps + [default] * (10 - custom_steps)


@pytest.mark.parametrize("ratio", [-0.1, float("nan"), float("inf")])
def test_invalid_ratio_raises_invalid_rules(ratio: float) -> None:
    with pytest.raises(InvalidRules) as error:
        switch_step(ratio, 28)
    assert error.value.code == "invalid_switch_ratio"


def test_schedule_rejects_rules_for_different_layouts() -> None:
    with pytest.raises(ValueError, match="same groups"):
        RuleSchedule(locality_rules(2), default_rules(3), 0)
