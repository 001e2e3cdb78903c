"""Turning an edit's settings into its rule schedule: default rules, custom rules and the switch step.

Custom rules are the demo's locality rule, or the user's cells (`custom_rules`, by label) applied on top of
it, with the `symmetric_masking` / `bboxes_attend_to_each_other` variants; they hold for steps
`[0, switch_at)` and the default rules after (facts §2). Everything here is the engine's (`rules`); this
module only reads the settings.
"""

from __future__ import annotations

from replan_common.protocol import EditSettings
from replan_editor.attention.rules import RuleSchedule, default_rules, locality_rules, rules_from_mapping


def rule_schedule(settings: EditSettings, num_regions: int, *, has_image_prompt: bool) -> RuleSchedule:
    """The schedule of a resolved `settings` for a plan with `num_regions` regions."""
    if settings.steps is None or settings.rule_switch_ratio is None:
        raise ValueError("rule_schedule needs resolved settings (steps and rule_switch_ratio set)")
    variants = {
        "has_image_prompt": has_image_prompt,
        "symmetric_masking": settings.symmetric_masking,
        "bboxes_attend_to_each_other": settings.bboxes_attend_to_each_other,
    }
    default = default_rules(num_regions, **variants)
    custom = locality_rules(num_regions, **variants)
    if settings.custom_rules:
        custom = rules_from_mapping(settings.custom_rules, base=custom)
    return RuleSchedule.from_ratio(custom, default, ratio=settings.rule_switch_ratio, num_steps=settings.steps)
