"""Reading model answers: degenerate boxes dropped and reported, rephrase answers kept global-only, and
answers the parser rejects turned into 502 `planner_output_invalid` naming the parser's code."""

from __future__ import annotations

import pytest

from replan_common.protocol import PlanMode
from replan_planner.output import PlannerOutputInvalid, read_model_output

HEAD = "<think>reasoning</think><gen_image>keep remaining part of image unchanged.</gen_image>"


def test_good_answer() -> None:
    read = read_model_output(
        HEAD + '<region>[{"bbox_2d": [1, 2, 30, 40], "hint": "a plant"}]</region>', mode=PlanMode.REGIONS
    )
    assert read.plan.regions[0].bbox == (1.0, 2.0, 30.0, 40.0)
    assert read.source_indices == (0,) and read.adjustments == ()


def test_degenerate_boxes_are_dropped_and_indices_kept() -> None:
    text = HEAD + (
        '<region>[{"bbox_2d": [10, 10, 5, 50], "hint": "backwards"}, {"bbox_2d": [1, 2, 30, 40], "hint": "ok"}, '
        '{"bbox_2d": [7, 7, 7, 9], "hint": "no width"}, {"bbox_2d": [3, 3, 9, 9], "hint": "a sign"}]</region>'
    )
    read = read_model_output(text, mode=PlanMode.REGIONS)
    assert [r.hint for r in read.plan.regions] == ["ok", "a sign"]
    assert read.source_indices == (1, 3)
    assert [(a.index, a.action) for a in read.adjustments] == [(0, "dropped"), (2, "dropped")]
    assert read.adjustments[0].reason.startswith("degenerate_bbox: box [10, 10, 5, 50]")


def test_parse_error_after_a_drop_names_the_models_own_index() -> None:
    text = HEAD + '<region>[{"bbox_2d": [9, 9, 1, 1], "hint": "x"}, {"bbox_2d": [1, 1, 5, 5]}]</region>'
    with pytest.raises(PlannerOutputInvalid) as caught:
        read_model_output(text, mode=PlanMode.REGIONS)
    assert caught.value.param == "regions[1].hint"
    assert caught.value.parse_code == "missing_hint"


@pytest.mark.parametrize(
    ("text", "parse_code"),
    [
        ("", "empty_output"),
        ("I would make the cup red.", "missing_global"),
        (HEAD, "missing_region"),
        (HEAD + "<region>[{bbox_2d: [1, 2, 3, 4]}]</region>", "invalid_json"),
        (HEAD + '<region>[{"bbox_2d": [1, 2, 3, 4], "hint": "a"', "unclosed_tag"),
    ],
)
def test_unparseable_answer_is_502_with_the_parse_code_first(text: str, parse_code: str) -> None:
    with pytest.raises(PlannerOutputInvalid) as caught:
        read_model_output(text, mode=PlanMode.REGIONS, finish_reason="length")
    error = caught.value
    assert error.status == 502 and error.code == "planner_output_invalid" and error.parse_code == parse_code
    assert error.message.startswith(f"[{parse_code}]")
    assert "cut off at the token limit" in error.message


def test_rephrase_mode_needs_no_region_and_drops_any() -> None:
    assert read_model_output(HEAD, mode=PlanMode.REPHRASE).plan.regions == ()
    read = read_model_output(
        HEAD + '<region>[{"bbox_2d": [1, 2, 30, 40], "hint": "p"}]</region>', mode=PlanMode.REPHRASE
    )
    assert read.plan.regions == () and read.source_indices == ()
    assert [(a.index, a.action) for a in read.adjustments] == [(0, "dropped")]


def test_plan_json_answers_are_read_too() -> None:
    read = read_model_output(
        '{"global_prompt": "snow", "regions": [{"bbox": [0, 0, 4, 4], "hint": "h"}]}', mode=PlanMode.REGIONS
    )
    assert read.source_indices == (0,) and read.plan.global_prompt == "snow"
