"""Reading judge replies: fenced JSON → whole JSON → first digit 1-5 → failed; clamping."""

from __future__ import annotations

import pytest

from replan_eval.judge import Dimension, ParseMethod, parse_reply


def test_fenced_json_block_is_read_first() -> None:
    reply = 'Here you go.\n```json\n{"reasoning": "on the mug", "target_score": 5}\n```\nScore 1 would be wrong.'
    parsed = parse_reply(reply, Dimension.TARGET)
    assert (parsed.score, parsed.method, parsed.reasoning) == (5.0, ParseMethod.FENCED_JSON, "on the mug")


def test_fence_without_language_tag_is_accepted() -> None:
    parsed = parse_reply('```\n{"effect_score": 3, "reasoning": "partly"}\n```', Dimension.EFFECT)
    assert (parsed.score, parsed.method) == (3.0, ParseMethod.FENCED_JSON)


def test_nested_object_inside_fence() -> None:
    reply = '```json\n{"reasoning": "x", "detail": {"a": 1}, "quality_score": 4}\n```'
    assert parse_reply(reply, Dimension.QUALITY).score == 4.0


def test_whole_reply_as_json() -> None:
    parsed = parse_reply('  {"reasoning": "fine", "consistency_score": 3}  ', Dimension.CONSISTENCY)
    assert (parsed.score, parsed.method) == (3.0, ParseMethod.JSON)


def test_broken_fence_falls_back_to_first_digit() -> None:
    reply = '```json\n{"reasoning": "unterminated, "effect_score": 5\n```'
    parsed = parse_reply(reply, Dimension.EFFECT)
    assert (parsed.score, parsed.method) == (5.0, ParseMethod.DIGIT)


def test_first_standalone_digit_in_prose() -> None:
    parsed = parse_reply("The change is on the right object, so I give it a 5 out of 5.", Dimension.TARGET)
    assert (parsed.score, parsed.raw_score, parsed.method) == (5.0, 5.0, ParseMethod.DIGIT)


def test_digits_inside_numbers_are_not_scores() -> None:
    assert parse_reply("I counted 12 cars and 30 people.", Dimension.QUALITY).method is ParseMethod.FAILED


@pytest.mark.parametrize("reply", ["", None, "no idea", "score: 7"])
def test_unreadable_replies_fail(reply: str | None) -> None:
    parsed = parse_reply(reply, Dimension.EFFECT)
    assert parsed.score is None
    assert parsed.method is ParseMethod.FAILED


def test_json_without_the_score_key_fails_rather_than_reading_a_digit_from_the_reasoning() -> None:
    parsed = parse_reply('{"reasoning": "step 1 found the mug", "verdict": "good"}', Dimension.TARGET)
    assert parsed.score is None
    assert parsed.method is ParseMethod.FAILED
    assert parsed.reasoning == "step 1 found the mug"


def test_plain_score_key_is_accepted() -> None:
    assert parse_reply('{"score": 3}', Dimension.EFFECT).score == 3.0


def test_numeric_string_score_is_accepted() -> None:
    assert parse_reply('{"quality_score": "4"}', Dimension.QUALITY).score == 4.0


@pytest.mark.parametrize("value", ["true", '"high"', "null", "[5]"])
def test_non_numeric_scores_fail(value: str) -> None:
    assert parse_reply(f'{{"target_score": {value}}}', Dimension.TARGET).score is None


@pytest.mark.parametrize(("raw", "clamped"), [(7, 5.0), (0, 1.0), (-3, 1.0), (4.5, 4.5)])
def test_scores_are_clamped_into_the_scale(raw: float, clamped: float) -> None:
    parsed = parse_reply(f'{{"quality_score": {raw}}}', Dimension.QUALITY)
    assert parsed.score == clamped
    assert parsed.raw_score == raw


def test_in_range_off_grid_values_are_kept() -> None:
    # Target's grid is {1, 5}; a 4 stays 4 (and still binarises to 1 at >= 4, as in the original).
    assert parse_reply('{"target_score": 4}', Dimension.TARGET).score == 4.0
