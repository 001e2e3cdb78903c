"""Built-in rule sets checked cell by cell against the facts file (replan-facts.md §2)."""

from __future__ import annotations

import itertools

import pytest

from replan_editor.attention import AttentionRules, Group, GroupKind, default_rules, groups_for, locality_rules


def forbidden_default(q: Group, k: Group, *, symmetric: bool = False, separate_boxes: bool = False) -> bool:
    """The facts' default rules written as the list of forbidden cells (everything else is allowed)."""
    if GroupKind.IMAGE_PROMPT in (q.kind, k.kind):
        return False  # Image Prompt attends to everything and everything attends to it
    hint = GroupKind.HINT
    if q.kind is GroupKind.MAIN and k.kind is hint:
        return True  # Main does not attend to hints
    if q.kind is hint and k.kind is GroupKind.MAIN:
        return True  # a hint does not attend to Main
    if q.kind is hint and k.kind is hint and q.region != k.region:
        return True  # nor to other hints
    if q.is_box and k.kind is hint and k.region != q.region:
        return True  # BBox i attends to Hint i and no other hint
    if q.is_background and k.kind is hint:
        return True  # the background attends to no hint
    if symmetric and q.kind is hint and k.is_latent and not (k.is_box and k.region == q.region):
        return True  # symmetric_masking: Hint i sees only BBox i
    # separate boxes: BBox i sees, of the image groups, only itself and the background
    return separate_boxes and q.is_box and k.is_box and k.region != q.region


def cells(rules: AttentionRules) -> dict[tuple[str, str], bool]:
    groups = rules.groups
    return {
        (q.short_label, k.short_label): rules.allowed[i][j] for i, q in enumerate(groups) for j, k in enumerate(groups)
    }


@pytest.mark.parametrize("regions", [1, 3])
@pytest.mark.parametrize("qwen", [False, True], ids=["flux", "qwen"])
@pytest.mark.parametrize(("symmetric", "separate_boxes"), [(False, False), (True, False), (False, True), (True, True)])
def test_default_rules_match_the_facts_cell_by_cell(
    regions: int, qwen: bool, symmetric: bool, separate_boxes: bool
) -> None:
    rules = default_rules(
        regions, has_image_prompt=qwen, symmetric_masking=symmetric, bboxes_attend_to_each_other=not separate_boxes
    )
    groups = groups_for(regions, has_image_prompt=qwen)
    assert rules.groups == groups
    for (i, q), (j, k) in itertools.product(enumerate(groups), repeat=2):
        expected = not forbidden_default(q, k, symmetric=symmetric, separate_boxes=separate_boxes)
        assert rules.allowed[i][j] == expected, f"{q.label} -> {k.label}"


@pytest.mark.parametrize("regions", [1, 3])
@pytest.mark.parametrize("qwen", [False, True], ids=["flux", "qwen"])
def test_locality_rule_differs_from_default_only_in_noise_background_to_noise_boxes(regions: int, qwen: bool) -> None:
    default = cells(default_rules(regions, has_image_prompt=qwen))
    local = cells(locality_rules(regions, has_image_prompt=qwen))
    changed = {cell for cell in default if default[cell] != local[cell]}
    assert changed == {("N.BG", f"N.B{i}") for i in range(1, regions + 1)}
    assert all(default[cell] and not local[cell] for cell in changed)
    assert all(local[("I.BG", f"N.B{i}")] for i in range(1, regions + 1))  # stays allowed


def test_locality_rule_for_one_box_is_the_demo_matrix() -> None:
    forbidden = {("Main", "H1"), ("H1", "Main"), ("N.BG", "H1"), ("N.BG", "N.B1"), ("I.BG", "H1")}
    matrix = cells(locality_rules(1))
    assert {label for label, _ in matrix} == {"Main", "H1", "N.B1", "I.B1", "N.BG", "I.BG"}
    assert {cell for cell, allowed in matrix.items() if not allowed} == forbidden


def test_group_order_is_the_demo_panel_order() -> None:
    labels = [g.short_label for g in groups_for(2, has_image_prompt=True)]
    assert labels == ["Main", "ImgP", "H1", "N.B1", "I.B1", "H2", "N.B2", "I.B2", "N.BG", "I.BG"]


def test_long_and_short_labels_follow_the_original() -> None:
    long = [g.label for g in groups_for(1, has_image_prompt=True)]
    assert long == [
        "Main Prompt",
        "Image Prompt",
        "Hint 1",
        "Noise BBox 1",
        "Image BBox 1",
        "Noise Background",
        "Image Background",
    ]


def test_rule_matrix_of_the_wrong_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="must be 6x6"):
        AttentionRules(1, False, ((True,),))


def test_rules_compare_by_matrix_not_by_name() -> None:
    a = default_rules(2)
    b = AttentionRules(2, False, a.allowed, name="renamed")
    assert a == b and hash(a) == hash(b)
    assert a != locality_rules(2)
