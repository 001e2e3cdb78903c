"""Per-backbone defaults (facts §2), the tiny preset's, and the working resolution each backbone snaps to."""

from __future__ import annotations

import pytest

from replan_common.errors import BadRequest
from replan_common.geometry import Size, kontext_working_size, qwen_edit_working_size
from replan_common.protocol import Backbone, EditSettings
from replan_editor.pipelines.defaults import BACKBONE_DEFAULTS, TINY_DEFAULTS, resolve_settings
from replan_editor.pipelines.resolution import kontext_size_for_area, working_size


def test_kontext_defaults() -> None:
    s = resolve_settings(EditSettings(), Backbone.FLUX_KONTEXT, BACKBONE_DEFAULTS[Backbone.FLUX_KONTEXT])
    assert (s.backbone, s.steps, s.guidance_scale, s.expand_value, s.rule_switch_ratio) == (
        Backbone.FLUX_KONTEXT,
        28,
        2.5,
        0.15,
        0.0,
    )
    assert s.true_cfg_scale == 1.0  # no true CFG
    assert s.max_area == 1024 * 1024


def test_qwen_defaults() -> None:
    s = resolve_settings(EditSettings(), Backbone.QWEN_IMAGE_EDIT, BACKBONE_DEFAULTS[Backbone.QWEN_IMAGE_EDIT])
    assert (s.steps, s.true_cfg_scale, s.negative_prompt, s.expand_value, s.rule_switch_ratio) == (
        50,
        4.0,
        " ",
        0.0,
        0.5,
    )
    assert s.max_area == 1024 * 1024


@pytest.mark.parametrize("backbone", list(Backbone))
def test_nothing_is_left_unset_and_given_values_win(backbone: Backbone) -> None:
    given = EditSettings(steps=3, expand_value=0.3, negative_prompt="blurry", max_area=256 * 256)
    s = resolve_settings(given, backbone, TINY_DEFAULTS[backbone])
    assert (s.steps, s.expand_value, s.negative_prompt, s.max_area) == (3, 0.3, "blurry", 256 * 256)
    unset = {k for k, v in s.model_dump().items() if v is None}
    assert unset <= {"custom_rules", "replace_global_prompt"}  # where None itself has a meaning


def test_tiny_preset_is_small_and_fast() -> None:
    for backbone in Backbone:
        s = resolve_settings(EditSettings(), backbone, TINY_DEFAULTS[backbone])
        assert s.max_area is not None and s.max_area <= 256 * 256
        assert s.steps is not None and s.steps <= 8


def test_other_backbone_is_rejected() -> None:
    with pytest.raises(BadRequest):
        resolve_settings(
            EditSettings(backbone=Backbone.QWEN_IMAGE_EDIT),
            Backbone.FLUX_KONTEXT,
            BACKBONE_DEFAULTS[Backbone.FLUX_KONTEXT],
        )


@pytest.mark.parametrize("size", [Size(150, 120), Size(640, 480), Size(480, 640), Size(1920, 1080), Size(100, 100)])
@pytest.mark.parametrize("max_area", [128 * 128, 512 * 512, 1024 * 1024])
def test_working_sizes_are_token_aligned_and_near_the_budget(size: Size, max_area: int) -> None:
    for backbone in Backbone:
        working = working_size(backbone, size, max_area)
        assert working.width % 16 == 0 and working.height % 16 == 0
        assert 0.7 * max_area <= working.area <= 1.3 * max_area


def test_kontext_at_the_default_area_is_the_preferred_bucket() -> None:
    for size in (Size(150, 120), Size(1920, 1080), Size(600, 1400)):
        assert kontext_size_for_area(size, 1024 * 1024) == kontext_working_size(size)


def test_qwen_working_size_is_the_geometry_rule() -> None:
    size = Size(640, 480)
    expected = qwen_edit_working_size(size, target_area=512 * 512)
    assert working_size(Backbone.QWEN_IMAGE_EDIT, size, 512 * 512) == expected
