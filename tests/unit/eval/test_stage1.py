"""Stage-1 reward against hand-computed values.

Every expected number below is worked out by hand in the comment beside it from the formula
``total = 0.5·format + 0.3·quality + 0.2·region`` (facts §4); none is produced by calling the code.
Shorthand in comments: ramp_t = 0.25·min(len(think), 50)/50, ramp_g = 0.25·min(len(gen_image), 20)/20.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replan_eval.rewards.stage1 import (
    Stage1Rules,
    normalize_tags,
    score_stage1,
)

# 147 characters: over 50, so ramp_t = 0.25; under 512, so no length penalty.
THINK = (
    "The instruction asks to replace the used cup on the desk with a small potted plant. "
    "Only the cup changes; the desk and the laptop stay as they are."
)
KEEP = "keep remaining part of image unchanged."  # 39 characters: ramp_g = 0.25
PLANT = {"bbox_2d": [412, 280, 520, 395], "point_2d": [466, 337], "hint": "a small green potted plant"}
LAMP = {"bbox_2d": [40, 60, 180, 300], "hint": "keep the desk lamp unchanged"}

TEMPLATE_EXAMPLE = (
    '<think>Reasoning process</think><gen_image>Global edit instruction</gen_image><region>[{"bbox_2d": '
    '[10,150,150,210], "point_2d": [30,175], "hint": "change the color of this one apple to blue"}, '
    '{"bbox_2d": [150,50,200,150], "point_2d": [175,75], "hint": "keep this one apple unchanged"}]</region>'
)


def tagged(think: str = THINK, gen: str | None = KEEP, region: str | list[object] | None = None) -> str:
    text = f"<think>{think}</think>"
    if gen is not None:
        text += f"<gen_image>{gen}</gen_image>"
    if region is not None:
        body = region if isinstance(region, str) else json.dumps(region)
        text += f"<region>{body}</region>"
    return text


def test_string_lengths_used_in_the_hand_computations() -> None:
    assert len(THINK) == 147
    assert len(KEEP) == 39
    assert len("Reasoning process") == 17
    assert len("Global edit instruction") == 23
    assert len("Detailed prompt for the image generator") == 39


# (id, response, format, quality, region, total)
CASES: list[tuple[str, str, float, float, float, float]] = [
    # f=1; q = 0.25 + 0.25 (valid JSON) + 0.25 = 0.75; r = 0.5 + 0.2 (1 region) + 0.2 (hints ok) = 0.9
    # total = 0.5 + 0.225 + 0.18 = 0.905
    ("valid_one_region", tagged(region=[PLANT]), 1.0, 0.75, 0.9, 0.905),
    # two regions: still 1..5, all hints valid: same as above
    ("valid_two_regions", tagged(region=[PLANT, LAMP]), 1.0, 0.75, 0.9, 0.905),
    # a real global prompt instead of the keep-unchanged placeholder (also 20+ chars): same
    (
        "valid_global_edit",
        tagged(gen="turn the scene into a warm sunset", region=[PLANT]),
        1.0,
        0.75,
        0.9,
        0.905,
    ),
    # region [] (no local edit): q = 0.75 (valid JSON); r = 0.5, no count bonus (0 regions), no hint bonus
    # total = 0.5 + 0.225 + 0.1 = 0.825
    ("empty_region_list", tagged(region="[]"), 1.0, 0.75, 0.5, 0.825),
    # no region tag: f=1 (region optional); q = 0.25 + 0.25 = 0.5; r = 0; total = 0.5 + 0.15 = 0.65
    ("no_region_tag", tagged(), 1.0, 0.5, 0.0, 0.65),
    # blank region tag: format with region; no region terms at all. total = 0.65
    ("blank_region_tag", tagged(region="  "), 1.0, 0.5, 0.0, 0.65),
    # the template's own example line, copied:
    # q = 0.25·17/50 (0.085) − 20 (think placeholder) + 0.25 (valid JSON) + 0.25 (23 chars) − 20 = −39.415
    # r = 0.5 + 0.2 − 2 (placeholder hints) − 2 (example boxes), no hint bonus = −3.3
    # total = 0.5 − 11.8245 − 0.66 = −11.9845
    ("template_copied", TEMPLATE_EXAMPLE, 1.0, -39.415, -3.3, -11.9845),
    # our own hint on the template's first example box: r = 0.5 + 0.2 − 1 + 0.2 = −0.1
    # total = 0.5 + 0.225 − 0.02 = 0.705
    (
        "example_bbox_copied",
        tagged(region=[{"bbox_2d": [10, 150, 150, 210], "hint": "make the mug blue"}]),
        1.0,
        0.75,
        -0.1,
        0.705,
    ),
    # same box written with floats matches by value (choice 3): −0.1 again
    (
        "example_bbox_as_floats",
        tagged(region=[{"bbox_2d": [10.0, 150, 150.0, 210], "hint": "make the mug blue"}]),
        1.0,
        0.75,
        -0.1,
        0.705,
    ),
    # placeholder hint on our own box: r = 0.5 + 0.2 − 1 (no hint bonus) = −0.3; total = 0.725 − 0.06 = 0.665
    (
        "placeholder_hint",
        tagged(region=[{"bbox_2d": [1, 2, 30, 40], "hint": "how to edit for this region"}]),
        1.0,
        0.75,
        -0.3,
        0.665,
    ),
    # example hint with other case and spacing still counts as copied (choice 2): −0.3
    (
        "example_hint_recased",
        tagged(region=[{"bbox_2d": [1, 2, 30, 40], "hint": "  Keep this one apple  UNCHANGED "}]),
        1.0,
        0.75,
        -0.3,
        0.665,
    ),
    # an empty hint among two regions: r = 0.5 + 0.2 − 1 = −0.3 (one invalid hint kills the bonus)
    (
        "empty_hint",
        tagged(region=[PLANT, {"bbox_2d": [1, 2, 30, 40], "hint": ""}]),
        1.0,
        0.75,
        -0.3,
        0.665,
    ),
    # bad JSON (unclosed list): q = 0.25 − 0.25 + 0.25 = 0.25; r = −0.5; format ignores JSON: f=1
    # total = 0.5 + 0.075 − 0.1 = 0.475
    ("bad_json", tagged(region='[{"bbox_2d": [1, 2, 3, 4], "hint": "x"}'), 1.0, 0.25, -0.5, 0.475),
    # JSON that is an object, not a list: invalid, same numbers
    ("region_not_a_list", tagged(region='{"bbox_2d": [1, 2, 3, 4], "hint": "x"}'), 1.0, 0.25, -0.5, 0.475),
    ("bbox_three_numbers", tagged(region=[{"bbox_2d": [1, 2, 3], "hint": "x"}]), 1.0, 0.25, -0.5, 0.475),
    ("bbox_string_coords", tagged(region=[{"bbox_2d": ["1", 2, 3, 4], "hint": "x"}]), 1.0, 0.25, -0.5, 0.475),
    ("missing_hint_key", tagged(region=[{"bbox_2d": [1, 2, 3, 4]}]), 1.0, 0.25, -0.5, 0.475),
    ("hint_not_a_string", tagged(region=[{"bbox_2d": [1, 2, 3, 4], "hint": 7}]), 1.0, 0.25, -0.5, 0.475),
    # JSON booleans are not numbers (choice 1): invalid
    ("bbox_booleans", tagged(region='[{"bbox_2d": [true, 2, 3, 4], "hint": "x"}]'), 1.0, 0.25, -0.5, 0.475),
    # NaN is not JSON (choice 1): invalid
    ("bbox_nan", tagged(region='[{"bbox_2d": [NaN, 2, 3, 4], "hint": "x"}]'), 1.0, 0.25, -0.5, 0.475),
    # six valid regions: no count bonus; r = 0.5 + 0.2 (hints) = 0.7; total = 0.725 + 0.14 = 0.865
    (
        "too_many_regions",
        tagged(region=[{"bbox_2d": [i, i, i + 10, i + 10], "hint": f"paint tile {i} red"} for i in range(6)]),
        1.0,
        0.75,
        0.7,
        0.865,
    ),
    # empty think: ramp_t = 0, no penalty; q = 0 + 0.25 + 0.25 = 0.5; total = 0.5 + 0.15 + 0.18 = 0.83
    ("empty_think", tagged(think="", region=[PLANT]), 1.0, 0.5, 0.9, 0.83),
    # missing gen_image: f=0; q = 0.25 + 0.25 + 0 − 20 = −19.5; r = 0.9; total = −5.85 + 0.18 = −5.67
    ("missing_gen_image", tagged(gen=None, region=[PLANT]), 0.0, -19.5, 0.9, -5.67),
    # empty gen_image: f=1; q = −19.5; total = 0.5 − 5.85 + 0.18 = −5.17
    ("empty_gen_image", tagged(gen="", region=[PLANT]), 1.0, -19.5, 0.9, -5.17),
    # gen_image placeholder (39 chars): q = 0.25 + 0.25 + 0.25 − 20 = −19.25; total = 0.5 − 5.775 + 0.18
    (
        "gen_image_placeholder",
        tagged(gen="Detailed prompt for the image generator", region=[PLANT]),
        1.0,
        -19.25,
        0.9,
        -5.095,
    ),
    # think placeholder, recased: q = 0.085 − 20 + 0.25 + 0.25 = −19.415; total = 0.5 − 5.8245 + 0.18
    ("think_placeholder", tagged(think="reasoning PROCESS", region=[PLANT]), 1.0, -19.415, 0.9, -5.1445),
    # short think (10 chars) and short gen (8 chars): q = 0.05 + 0.25 + 0.1 = 0.4; total = 0.5 + 0.12 + 0.18
    ("short_parts", tagged(think="swap a cup", gen="add pots", region=[PLANT]), 1.0, 0.4, 0.9, 0.8),
    # 600-char think: 0.25 − 0.25; q = 0 + 0.25 + 0.25 = 0.5; total = 0.5 + 0.15 + 0.18 = 0.83
    ("long_think", tagged(think="x" * 600, region=[PLANT]), 1.0, 0.5, 0.9, 0.83),
    # 600-char gen_image: q = 0.25 + 0.25 + 0.25 − 0.25 = 0.5; total 0.83
    ("long_gen_image", tagged(gen="y" * 600, region=[PLANT]), 1.0, 0.5, 0.9, 0.83),
    # spaces and newlines inside the tags are removed first: same as valid_one_region
    (
        "whitespace_mangled_tags",
        f"< think > {THINK} < / think >\n< gen_image >{KEEP}< /gen_image >\n"
        f"< region > {json.dumps([PLANT])} </ region >\n",
        1.0,
        0.75,
        0.9,
        0.905,
    ),
    # chatter before the tags breaks the format only: total = 0 + 0.225 + 0.18 = 0.405
    ("text_outside_tags", "Sure! Here is my plan: " + tagged(region=[PLANT]), 0.0, 0.75, 0.9, 0.405),
    # gen_image before think: not the format; contents are still read: 0.405
    (
        "wrong_tag_order",
        f"<gen_image>{KEEP}</gen_image><think>{THINK}</think><region>{json.dumps([PLANT])}</region>",
        0.0,
        0.75,
        0.9,
        0.405,
    ),
    # unclosed region: no region tag is found, and the trailing text breaks the format
    # q = 0.25 + 0.25 = 0.5; r = 0; total = 0.15
    ("unclosed_region", tagged() + f"<region>{json.dumps([PLANT])}", 0.0, 0.5, 0.0, 0.15),
]


@pytest.mark.parametrize(
    ("response", "fmt", "quality", "region", "total"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_stage1_matches_hand_computed_values(
    response: str, fmt: float, quality: float, region: float, total: float
) -> None:
    score = score_stage1(response)
    assert score.format == fmt
    assert score.quality == pytest.approx(quality, abs=1e-12)
    assert score.region == pytest.approx(region, abs=1e-12)
    assert score.total == pytest.approx(total, abs=1e-12)


def test_there_are_at_least_twenty_hand_computed_cases() -> None:
    assert len(CASES) >= 20


def test_repeated_tag_pairs_still_match_the_format_as_the_original() -> None:
    # Lazy tag contents may span tags; the original's fullmatch accepts this and so do we.
    response = f"<think>{THINK}</think><gen_image>a</gen_image><think>again</think><gen_image>{KEEP}</gen_image>"
    assert score_stage1(response).format == 1.0


def test_diagnostics_explain_a_copied_template() -> None:
    d = score_stage1(TEMPLATE_EXAMPLE).diagnostics
    assert (d.think_placeholder, d.global_placeholder) == (True, True)
    assert (d.placeholder_hints, d.example_bboxes, d.region_count) == (2, 2, 2)
    assert d.region_json_valid is True


def test_whitespace_only_hint_counts_as_empty_placeholder() -> None:
    # r = 0.5 + 0.2 − 1 = −0.3
    response = tagged(region=[{"bbox_2d": [1, 2, 3, 4], "hint": "   "}])
    assert score_stage1(response).region == pytest.approx(-0.3)


def test_custom_rules_penalise_a_different_planner_templates_examples() -> None:
    rules = Stage1Rules(
        hint_placeholders=frozenset({"make the cat orange"}),
        example_bboxes=frozenset({(5.0, 5.0, 50.0, 50.0)}),
    )
    response = tagged(region=[{"bbox_2d": [5, 5, 50, 50], "hint": "make the cat orange"}])
    # r = 0.5 + 0.2 − 1 (hint) − 1 (box), no bonus = −1.3
    assert score_stage1(response, rules).region == pytest.approx(-1.3)
    # the default rules know nothing of these: 0.9
    assert score_stage1(response).region == pytest.approx(0.9)


def test_normalisation_also_touches_slashes_in_content() -> None:
    assert normalize_tags("< think >red / blue</ think >") == "<think>red/blue</think>"


@given(st.text(max_size=300))
def test_any_text_scores_without_raising_and_within_bounds(text: str) -> None:
    score = score_stage1(text)
    assert score.format in (0.0, 1.0)
    assert score.region <= 0.9
    assert score.quality <= 0.75
    assert score.total == pytest.approx(0.5 * score.format + 0.3 * score.quality + 0.2 * score.region)


@given(st.text(alphabet=st.sampled_from(list("<>/ \n\tab")), max_size=60))
def test_normalisation_is_idempotent(text: str) -> None:
    once = normalize_tags(text)
    assert normalize_tags(once) == once
