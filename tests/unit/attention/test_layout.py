"""Token layout: sequence order, group membership, overlapping boxes, and the plan → token mapping."""

from __future__ import annotations

import pytest
import torch

from replan_common.geometry import ExpandMode, Size, TokenSpan
from replan_common.plan import Region, RegionPlan
from replan_editor.attention import Group, GroupKind, TextLayout, TokenLayout, layout_from_plan


def rows(layout: TokenLayout) -> dict[str, list[int]]:
    member = layout.membership()
    return {g.short_label: torch.nonzero(member[i]).flatten().tolist() for i, g in enumerate(layout.groups)}


def test_sequence_is_main_then_hints_then_noise_then_image_latents() -> None:
    layout = TokenLayout(TextLayout(3, (2, 1)), Size(2, 2), (TokenSpan(0, 1, 0, 1), TokenSpan(1, 2, 1, 2)))
    got = rows(layout)
    assert layout.seq_len == 3 + 3 + 2 * 4
    assert got["Main"] == [0, 1, 2]
    assert got["H1"] == [3, 4]
    assert got["H2"] == [5]
    assert got["N.B1"] == [6] and got["I.B1"] == [10]
    assert got["N.B2"] == [9] and got["I.B2"] == [13]
    assert got["N.BG"] == [7, 8] and got["I.BG"] == [11, 12]


def test_hints_first_puts_the_hints_before_the_main_prompt() -> None:
    layout = TokenLayout(TextLayout(3, (2, 1), hints_first=True), Size(1, 1), (TokenSpan(0, 1, 0, 1),) * 2)
    got = rows(layout)
    assert got["H1"] == [0, 1] and got["H2"] == [2] and got["Main"] == [3, 4, 5]


def test_image_prompt_span_is_carved_out_of_the_main_prompt() -> None:
    layout = TokenLayout(TextLayout(5, (1,), image_prompt=(1, 3)), Size(1, 1), (TokenSpan(0, 1, 0, 1),))
    got = rows(layout)
    assert got["ImgP"] == [1, 2]
    assert got["Main"] == [0, 3, 4]


def test_overlapping_boxes_put_shared_tokens_in_both_groups_and_background_is_the_rest() -> None:
    grid = Size(4, 3)
    spans = (TokenSpan(0, 2, 0, 3), TokenSpan(1, 3, 2, 4))
    layout = TokenLayout(TextLayout(1, (1, 1)), grid, spans)
    member = layout.membership()
    index = {g: i for i, g in enumerate(layout.groups)}
    box1 = member[index[Group(GroupKind.NOISE_BOX, 1)]]
    box2 = member[index[Group(GroupKind.NOISE_BOX, 2)]]
    background = member[index[Group(GroupKind.NOISE_BACKGROUND)]]
    shared = layout.noise_offset + 1 * 4 + 2  # row 1, column 2
    assert box1[shared] and box2[shared]
    latent = slice(layout.noise_offset, layout.image_offset)
    assert torch.equal(background[latent], ~(box1 | box2)[latent])
    # every token is in at least one group, and only box tokens in more than one
    counts = member.sum(dim=0)
    assert bool((counts >= 1).all())
    assert int((counts > 1).sum()) == 2  # the shared cell, noise and image copies


def test_regions_without_hint_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="one hint token count per region"):
        TokenLayout(TextLayout(3, (2,)), Size(2, 2), ())


def test_span_outside_the_grid_is_rejected() -> None:
    with pytest.raises(ValueError, match="outside"):
        TokenLayout(TextLayout(3, (2,)), Size(2, 2), (TokenSpan(0, 3, 0, 1),))


def test_layout_from_plan_expands_scales_and_maps_boxes_to_tokens() -> None:
    plan = RegionPlan(
        global_prompt="g",
        regions=(Region(bbox=(100, 100, 200, 150), hint="a"), Region(bbox=(0, 450, 640, 480), hint="b")),
    )
    layout = layout_from_plan(
        plan,
        original=Size(640, 480),
        working=Size(1024, 768),
        main_tokens=512,
        hint_tokens=[64, 32],
        expand_value=0.15,
        expand_mode=ExpandMode.RATIO,
    )
    assert layout.grid == Size(64, 48)
    # box 1 grows by 15 px in x and 7.5 px in y: (85, 92.5, 215, 157.5) → ×1.6 → (136, 148, 344, 252) px
    assert layout.spans[0] == TokenSpan(row0=9, row1=16, col0=8, col1=22)
    # box 2 touches the bottom and both sides; expansion is clipped to the image, so it ends on the grid edge
    assert layout.spans[1] == TokenSpan(row0=44, row1=48, col0=0, col1=64)
    assert layout.text.hint_tokens == (64, 32)
    assert layout.seq_len == 512 + 96 + 2 * 64 * 48


def test_layout_from_plan_needs_one_hint_count_per_region() -> None:
    plan = RegionPlan(global_prompt="g", regions=(Region(bbox=(0, 0, 10, 10), hint="a"),))
    with pytest.raises(ValueError, match="1 regions but 2"):
        layout_from_plan(plan, Size(64, 64), Size(64, 64), main_tokens=4, hint_tokens=[1, 1])


def test_layouts_compare_by_value() -> None:
    a = TokenLayout(TextLayout(3, (2,)), Size(2, 2), (TokenSpan(0, 1, 0, 1),))
    b = TokenLayout(TextLayout(3, (2,)), Size(2, 2), (TokenSpan(0, 1, 0, 1),))
    assert a == b and hash(a) == hash(b)
    assert a != TokenLayout(TextLayout(3, (2,)), Size(2, 2), (TokenSpan(0, 1, 0, 2),))
