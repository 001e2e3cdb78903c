"""Region attention for MMDiT editors: token groups, rules, cached mask plans and kernels. Plain PyTorch.

Typical use by an attention processor, once per request and rule phase, then in every layer::

    layout = layout_from_plan(plan, original, working, main_tokens=512, hint_tokens=[64, 64], expand_value=0.15)
    schedule = RuleSchedule.from_ratio(
        locality_rules(layout.num_regions), default_rules(layout.num_regions), ratio=0.0, num_steps=28
    )
    mask_plan = get_mask_plan(layout, schedule.rules_for_step(step))
    out = region_attention(q, k, v, mask_plan, kernel=AttentionKernel.AUTO)   # q, k, v: [B, H, S, D]
"""

from replan_common.protocol import AttentionKernel
from replan_editor.attention.groups import Group, GroupKind, groups_for, parse_label
from replan_editor.attention.layout import TextLayout, TokenLayout, layout_from_plan
from replan_editor.attention.mask_plan import MaskPlan, MaskPlanCache, get_mask_plan
from replan_editor.attention.options import KernelOptions
from replan_editor.attention.registry import (
    KernelUnavailable,
    Requirement,
    region_attention,
    register,
    resolve_kernel,
    select_kernel,
)
from replan_editor.attention.rules import (
    AttentionRules,
    RuleSchedule,
    default_rules,
    locality_rules,
    rules_from_mapping,
    switch_step,
)

__all__ = [
    "AttentionKernel",
    "AttentionRules",
    "Group",
    "GroupKind",
    "KernelOptions",
    "KernelUnavailable",
    "MaskPlan",
    "MaskPlanCache",
    "Requirement",
    "RuleSchedule",
    "TextLayout",
    "TokenLayout",
    "default_rules",
    "get_mask_plan",
    "groups_for",
    "layout_from_plan",
    "locality_rules",
    "parse_label",
    "region_attention",
    "register",
    "resolve_kernel",
    "rules_from_mapping",
    "select_kernel",
    "switch_step",
]
