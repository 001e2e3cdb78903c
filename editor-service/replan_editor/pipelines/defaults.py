"""Per-backbone edit defaults and `resolve_settings`: every `None` in `EditSettings` replaced by a value.

Owns the original's inference defaults (facts §2: Kontext 28 steps, distilled guidance 2.5, expand 0.15,
switch ratio 0; Qwen-Image-Edit 50 steps, true CFG 4.0 with negative prompt " ", expand 0.0, switch 0.5 —
the Dec 26 settings) and the `tiny` preset's smaller working area and step count. Knobs a backbone does not
use are resolved to their neutral value (Kontext: true CFG 1.0, i.e. off; Qwen: distilled guidance 1.0,
ignored) so a resolved settings object has no `None` left except where `None` itself means something
(`custom_rules`: the locality rule; `replace_global_prompt`: keep the plan's).
"""

from __future__ import annotations

from dataclasses import dataclass

from replan_common.errors import BadRequest
from replan_common.protocol import Backbone, EditSettings

#: The original's working-area budget: about 1024² pixels.
DEFAULT_MAX_AREA = 1024 * 1024


@dataclass(frozen=True)
class BackboneDefaults:
    """The values a backbone fills into unset settings."""

    steps: int
    guidance_scale: float
    true_cfg_scale: float
    negative_prompt: str
    expand_value: float
    rule_switch_ratio: float
    max_area: int = DEFAULT_MAX_AREA

    def scaled_down(self, *, steps: int, max_area: int) -> BackboneDefaults:
        """The same defaults with fewer steps and a smaller working area (the CPU `tiny` preset)."""
        return BackboneDefaults(
            steps=steps,
            guidance_scale=self.guidance_scale,
            true_cfg_scale=self.true_cfg_scale,
            negative_prompt=self.negative_prompt,
            expand_value=self.expand_value,
            rule_switch_ratio=self.rule_switch_ratio,
            max_area=max_area,
        )


BACKBONE_DEFAULTS: dict[Backbone, BackboneDefaults] = {
    Backbone.FLUX_KONTEXT: BackboneDefaults(
        steps=28,
        guidance_scale=2.5,
        true_cfg_scale=1.0,
        negative_prompt="",
        expand_value=0.15,
        rule_switch_ratio=0.0,
    ),
    Backbone.QWEN_IMAGE_EDIT: BackboneDefaults(
        steps=50,
        guidance_scale=1.0,
        true_cfg_scale=4.0,
        negative_prompt=" ",
        expand_value=0.0,
        rule_switch_ratio=0.5,
    ),
}

#: The CPU `tiny` preset: random weights, so only speed matters.
TINY_STEPS = 4
TINY_MAX_AREA = 128 * 128

TINY_DEFAULTS: dict[Backbone, BackboneDefaults] = {
    backbone: defaults.scaled_down(steps=TINY_STEPS, max_area=TINY_MAX_AREA)
    for backbone, defaults in BACKBONE_DEFAULTS.items()
}


def resolve_settings(settings: EditSettings, backbone: Backbone, defaults: BackboneDefaults) -> EditSettings:
    """`settings` with every unset knob filled from `defaults`; rejects settings meant for another backbone."""
    if settings.backbone is not None and settings.backbone is not backbone:
        raise BadRequest(
            f"this editor serves {backbone.value}, but the request asks for {settings.backbone.value}",
            code="backbone_mismatch",
            param="settings.backbone",
        )

    def pick(value: object, default: object) -> object:
        return default if value is None else value

    return settings.model_copy(
        update={
            "backbone": backbone,
            "steps": pick(settings.steps, defaults.steps),
            "guidance_scale": pick(settings.guidance_scale, defaults.guidance_scale),
            "true_cfg_scale": pick(settings.true_cfg_scale, defaults.true_cfg_scale),
            "negative_prompt": pick(settings.negative_prompt, defaults.negative_prompt),
            "expand_value": pick(settings.expand_value, defaults.expand_value),
            "rule_switch_ratio": pick(settings.rule_switch_ratio, defaults.rule_switch_ratio),
            "max_area": pick(settings.max_area, defaults.max_area),
        }
    )
