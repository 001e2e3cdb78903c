"""The planner-output parser: a corpus of realistic outputs, the rules it enforces, and round trips.

The corpus lives in `data/planner_outputs/`: one `.txt` per planner output and `expected.json` with the
plan each good one must give, or the error code and param each bad one must raise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from replan_common.errors import InvalidRegion, PlanParseError, Unprocessable
from replan_common.geometry import Size
from replan_common.plan import KEEP_UNCHANGED_PROMPT, Region, RegionPlan
from replan_common.plan_parser import parse_planner_output, validate_plan_boxes

CORPUS = Path(__file__).parent / "data" / "planner_outputs"
#: No per-example deadline: a loaded 2-core CI box must not fail a property on timing.
relaxed = settings(deadline=None)
EXPECTED: dict[str, dict[str, Any]] = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
GOOD = sorted(name for name, e in EXPECTED.items() if "code" not in e)
BAD = sorted(name for name, e in EXPECTED.items() if "code" in e)

TAG_MARKUP = ("<think>", "</think>", "<gen_image>", "</gen_image>", "<global>", "</global>", "<region>", "</region>")


def read_case(name: str) -> str:
    # Bytes, then decode: text mode would turn the CRLF case into LF and test nothing.
    return (CORPUS / name).read_bytes().decode("utf-8")


# --- the corpus ----------------------------------------------------------------------------------------


def test_corpus_is_large_and_mostly_malformed_in_many_ways() -> None:
    files = {p.name for p in CORPUS.glob("*.txt")}
    assert files == set(EXPECTED), "every output file needs an expectation and vice versa"
    assert len(files) >= 40
    assert len(BAD) >= len(files) / 2
    assert len({EXPECTED[name]["code"] for name in BAD}) >= 15


@pytest.mark.parametrize("name", GOOD)
def test_good_planner_output_gives_the_expected_plan(name: str) -> None:
    expected = EXPECTED[name]
    plan = parse_planner_output(read_case(name))
    assert plan.global_prompt == expected["global_prompt"]
    assert [{"bbox": list(r.bbox), "hint": r.hint} for r in plan.regions] == expected["regions"]
    assert plan.reasoning.startswith(expected["reasoning_prefix"])
    assert plan.reasoning == plan.reasoning.strip()
    if expected["reasoning_empty"]:
        assert plan.reasoning == ""


@pytest.mark.parametrize("name", BAD)
def test_bad_planner_output_raises_its_own_code_and_param(name: str) -> None:
    expected = EXPECTED[name]
    with pytest.raises(PlanParseError) as caught:
        parse_planner_output(read_case(name))
    error = caught.value
    assert (error.code, error.param) == (expected["code"], expected["param"])
    assert error.message
    if "message_contains" in expected:
        assert expected["message_contains"] in error.message


def test_parse_error_is_a_422_with_the_code_on_the_wire() -> None:
    with pytest.raises(PlanParseError) as caught:
        parse_planner_output("<gen_image>x</gen_image>")
    assert isinstance(caught.value, Unprocessable)
    assert caught.value.status == 422
    assert caught.value.to_envelope()["error"] == {
        "message": caught.value.message,
        "type": "invalid_request_error",
        "code": "missing_region",
        "param": "regions",
        "request_id": None,
    }


# --- specific rules ------------------------------------------------------------------------------------


def test_keep_unchanged_placeholder_is_kept_as_the_global_prompt() -> None:
    plan = parse_planner_output(f"<gen_image>{KEEP_UNCHANGED_PROMPT}</gen_image><region>[]</region>")
    assert plan.global_prompt == KEEP_UNCHANGED_PROMPT
    assert plan.is_empty


def test_rephrase_mode_allows_a_missing_region_tag() -> None:
    plan = parse_planner_output("<think>r</think><gen_image>Make it snow.</gen_image>", require_regions=False)
    assert plan == RegionPlan(reasoning="r", global_prompt="Make it snow.")


def test_rephrase_mode_allows_plan_json_without_regions() -> None:
    plan = parse_planner_output('{"global_prompt": "Make it snow."}', require_regions=False)
    assert plan == RegionPlan(global_prompt="Make it snow.")


def test_rephrase_mode_still_rejects_a_broken_region_tag() -> None:
    with pytest.raises(PlanParseError) as caught:
        parse_planner_output("<gen_image>x</gen_image><region>[{]</region>", require_regions=False)
    assert caught.value.code == "invalid_json"


def test_rephrase_mode_still_requires_a_global_prompt() -> None:
    with pytest.raises(PlanParseError) as caught:
        parse_planner_output("<think>only thoughts</think>", require_regions=False)
    assert caught.value.code == "missing_global"


def test_region_keys_other_than_box_and_hint_are_ignored() -> None:
    text = '<gen_image>g</gen_image><region>[{"point_2d": [1, 2], "bbox_2d": [0, 0, 4, 4], "hint": "h", "x": {}}]'
    plan = parse_planner_output(text + "</region>")
    assert plan.regions == (Region(bbox=(0, 0, 4, 4), hint="h"),)


def test_equal_bbox_and_bbox_2d_are_accepted() -> None:
    text = '<gen_image>g</gen_image><region>[{"bbox_2d": [0, 0, 4, 4], "bbox": [0, 0, 4, 4], "hint": "h"}]</region>'
    assert parse_planner_output(text).regions[0].bbox == (0, 0, 4, 4)


def test_plan_json_with_tag_markup_in_its_strings_is_read_as_json() -> None:
    plan = RegionPlan(reasoning="put it in <region>", global_prompt="g </gen_image>", regions=())
    assert parse_planner_output(plan.model_dump_json()) == plan


def test_hint_containing_a_closing_region_tag_round_trips() -> None:
    # Guards the fix in to_tagged_text: an unescaped "</region>" in a hint closed the tag early.
    plan = RegionPlan(global_prompt="g", regions=(Region(bbox=(1, 2, 3, 4), hint='a sign saying "</region>"'),))
    assert parse_planner_output(plan.to_tagged_text()) == plan


def test_no_truncation_of_a_valid_output_is_read_as_a_plan() -> None:
    # The original parser read a cut-off answer as "no regions"; every strict prefix must be an error.
    text = parse_planner_output(read_case("good_two_apples_one_blue.txt")).to_tagged_text()
    for end in range(len(text)):
        with pytest.raises(PlanParseError):
            parse_planner_output(text[:end])


# --- validating boxes against the image ----------------------------------------------------------------


def test_validate_plan_boxes_clips_small_overhangs_and_keeps_hints() -> None:
    plan = RegionPlan(
        global_prompt="g",
        regions=(Region(bbox=(-4, 10, 50, 60), hint="a"), Region(bbox=(80, 80, 110, 99), hint="b")),
    )
    fitted = validate_plan_boxes(plan, Size(100, 100))
    assert [r.bbox for r in fitted.regions] == [(0, 10, 50, 60), (80, 80, 100, 99)]
    assert [r.hint for r in fitted.regions] == ["a", "b"]
    assert fitted.global_prompt == plan.global_prompt


def test_validate_plan_boxes_names_the_region_outside_the_image() -> None:
    plan = RegionPlan(
        global_prompt="g",
        regions=(Region(bbox=(0, 0, 10, 10), hint="a"), Region(bbox=(150, 0, 190, 10), hint="b")),
    )
    with pytest.raises(InvalidRegion) as caught:
        validate_plan_boxes(plan, Size(100, 100))
    assert (caught.value.code, caught.value.param) == ("bbox_outside_image", "regions[1].bbox")


# --- properties ----------------------------------------------------------------------------------------

coordinates = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    x1, x2 = sorted(draw(st.lists(coordinates, min_size=2, max_size=2, unique=True)))
    y1, y2 = sorted(draw(st.lists(coordinates, min_size=2, max_size=2, unique=True)))
    return (x1, y1, x2, y2)


# Random text seldom spells a tag or a fence by chance, so mix those pieces in on purpose.
tricky_text = st.lists(
    st.one_of(st.text(max_size=8), st.sampled_from((*TAG_MARKUP, "```", "```json\n", "{", "[", "<", ">"))),
    max_size=6,
).map("".join)


def not_blank(text: str) -> bool:
    return bool(text.strip())


@st.composite
def plans(draw: st.DrawFn) -> RegionPlan:
    # The tagged format cannot escape its own tags in the reasoning or the global prompt (hints are
    # JSON and can): reasoning may mention any tag but "</think>", the global prompt none.
    reasoning = draw(tricky_text.filter(lambda s: "</think>" not in s))
    global_prompt = draw(tricky_text.filter(lambda s: not_blank(s) and not any(t in s for t in TAG_MARKUP)))
    regions = draw(st.lists(st.builds(Region, bbox=boxes(), hint=tricky_text.filter(not_blank)), max_size=5))
    return RegionPlan(reasoning=reasoning, global_prompt=global_prompt, regions=tuple(regions))


@relaxed
@given(plans())
def test_tagged_text_round_trips(plan: RegionPlan) -> None:
    assert parse_planner_output(plan.to_tagged_text()) == plan


@relaxed
@given(plans())
def test_plan_json_round_trips(plan: RegionPlan) -> None:
    assert parse_planner_output(plan.model_dump_json()) == plan


@pytest.mark.parametrize(
    "body",
    ["[" * 100_000, '{"a": ' * 50_000, '[{"bbox_2d": [1, 2, 3, ' + "9" * 5000 + '], "hint": "h"}]'],
    ids=["deep-list", "deep-object", "5000-digit-number"],
)
def test_hostile_json_is_a_parse_error_not_a_crash(body: str) -> None:
    for text in (f"<gen_image>g</gen_image><region>{body}</region>", '{"global_prompt": "g", "regions": ' + body):
        with pytest.raises(PlanParseError) as caught:
            parse_planner_output(text)
        assert caught.value.code == "invalid_json"


@relaxed
@given(st.one_of(st.text(), tricky_text))
def test_arbitrary_text_gives_a_plan_or_a_parse_error(text: str) -> None:
    try:
        plan = parse_planner_output(text)
    except PlanParseError as error:
        assert error.code and error.message
    else:
        assert isinstance(plan, RegionPlan)


@settings(deadline=None, max_examples=40)
@given(plans(), st.sampled_from(["\n", "  ", "\r\n\t"]))
def test_whitespace_around_tags_does_not_change_the_plan(plan: RegionPlan, space: str) -> None:
    assume(not any(tag in plan.reasoning for tag in TAG_MARKUP))
    text = plan.to_tagged_text()
    for tag in TAG_MARKUP:
        text = text.replace(tag, f"{space}{tag}{space}")
    assert parse_planner_output(text) == plan
