"""User rule matrices by label: long and short forms, logical groups, and errors with codes."""

from __future__ import annotations

import pytest

from replan_common.errors import InvalidRules
from replan_editor.attention import Group, GroupKind, default_rules, groups_for, parse_label, rules_from_mapping


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Main Prompt", Group(GroupKind.MAIN)),
        ("Main", Group(GroupKind.MAIN)),
        ("Image Prompt", Group(GroupKind.IMAGE_PROMPT)),
        ("ImgP", Group(GroupKind.IMAGE_PROMPT)),
        ("Hint 2", Group(GroupKind.HINT, 2)),
        ("H2", Group(GroupKind.HINT, 2)),
        ("Noise BBox 1", Group(GroupKind.NOISE_BOX, 1)),
        ("N.B1", Group(GroupKind.NOISE_BOX, 1)),
        ("Image BBox 2", Group(GroupKind.IMAGE_BOX, 2)),
        ("I.B2", Group(GroupKind.IMAGE_BOX, 2)),
        ("Noise Background", Group(GroupKind.NOISE_BACKGROUND)),
        ("N.BG", Group(GroupKind.NOISE_BACKGROUND)),
        ("Image Background", Group(GroupKind.IMAGE_BACKGROUND)),
        ("I.BG", Group(GroupKind.IMAGE_BACKGROUND)),
        ("  noise   bbox 1 ", Group(GroupKind.NOISE_BOX, 1)),
        ("n.bg", Group(GroupKind.NOISE_BACKGROUND)),
    ],
)
def test_every_label_form_names_its_group(label: str, expected: Group) -> None:
    assert parse_label(label, groups_for(2, has_image_prompt=True)) == (expected,)


def test_logical_labels_name_both_copies() -> None:
    groups = groups_for(2)
    assert set(parse_label("BBox 2", groups)) == {Group(GroupKind.NOISE_BOX, 2), Group(GroupKind.IMAGE_BOX, 2)}
    assert set(parse_label("Background", groups)) == {
        Group(GroupKind.NOISE_BACKGROUND),
        Group(GroupKind.IMAGE_BACKGROUND),
    }


@pytest.mark.parametrize("label", ["Hint 3", "N.B0", "ImgP", "Foreground", "H", ""])
def test_label_outside_the_layout_raises_invalid_rules_listing_valid_labels(label: str) -> None:
    with pytest.raises(InvalidRules) as error:
        parse_label(label, groups_for(2))
    assert error.value.code == "unknown_rule_label"
    assert repr(label) in error.value.message
    assert "Noise BBox 2 (N.B2)" in error.value.message
    assert error.value.status == 400


@pytest.mark.parametrize("separator", [",", "|", " | ", ", "])
def test_mapping_sets_the_named_cells_and_keeps_the_rest(separator: str) -> None:
    base = default_rules(2)
    rules = rules_from_mapping({f"N.BG{separator}Noise BBox 1": False, f"Main{separator}H2": True}, base=base)
    assert not rules.allows("N.BG", "N.B1")
    assert rules.allows("Main", "H2")
    changed = {
        (i, j) for i, row in enumerate(rules.allowed) for j, value in enumerate(row) if value != base.allowed[i][j]
    }
    assert len(changed) == 2


def test_specific_cells_override_logical_ones_whatever_the_key_order() -> None:
    base = default_rules(1)
    rules = rules_from_mapping({"N.B1|Main": True, "BBox 1|Main": False}, base=base)
    assert rules.allows("N.B1", "Main")
    assert not rules.allows("I.B1", "Main")


def test_full_demo_matrix_round_trips_through_its_wire_form() -> None:
    base = default_rules(3, has_image_prompt=True)
    locality = rules_from_mapping({f"N.BG|N.B{i}": False for i in (1, 2, 3)}, base=base)
    again = rules_from_mapping(locality.to_mapping(short=False), base=base)
    assert again == locality
    assert rules_from_mapping(locality.to_mapping(short=True), base=base) == locality


@pytest.mark.parametrize("key", ["Main", "Main|H1|N.B1", "|Main", "Main,"])
def test_malformed_key_raises_invalid_rules(key: str) -> None:
    with pytest.raises(InvalidRules) as error:
        rules_from_mapping({key: True}, base=default_rules(1))
    assert error.value.code == "malformed_rule_key"
    assert key in error.value.param


@pytest.mark.parametrize("value", [1, "false", None])
def test_non_boolean_value_raises_invalid_rules(value: object) -> None:
    with pytest.raises(InvalidRules) as error:
        rules_from_mapping({"Main|H1": value}, base=default_rules(1))
    assert error.value.code == "invalid_rule_value"


def test_unknown_label_in_mapping_names_the_bad_key() -> None:
    with pytest.raises(InvalidRules) as error:
        rules_from_mapping({"N.BG|N.B7": False}, base=default_rules(2))
    assert error.value.code == "unknown_rule_label"
    assert "N.B7" in error.value.message
    assert error.value.param == "custom_rules['N.BG|N.B7']"
