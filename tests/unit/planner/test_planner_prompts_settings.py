"""Prompt templates (versioned data files, the original inference's message layout) and `PlannerSettings`
(env prefix, the tiny preset, checks that fail at start-up naming the variable)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from replan_common.plan import KEEP_UNCHANGED_PROMPT
from replan_common.protocol import PlanMode
from replan_planner.prompts import available_versions, load_template, openai_user_message, transformers_user_message
from replan_planner.settings import BackendKind, PlannerSettings, StructuredOutput


def test_v1_templates_exist_for_every_mode() -> None:
    assert "v1" in available_versions()
    regions = load_template(PlanMode.REGIONS, "v1")
    assert regions.text.endswith("The user instruction:")
    assert regions.render("make it red") == regions.text + "\nmake it red"
    # the structure the checkpoint was tuned on: tags, six rules, the keep-unchanged placeholder, one example
    for marker in ("<think>", "<gen_image>", "<region>", '"bbox_2d"', '"hint"', "nothing outside the tags"):
        assert marker in regions.text
    assert [f"{n}." in regions.text for n in range(1, 7)] == [True] * 6
    assert KEEP_UNCHANGED_PROMPT in regions.text and "${" not in regions.text
    rephrase = load_template(PlanMode.REPHRASE, "v1")
    assert "<gen_image>" in rephrase.text and "<region>" not in rephrase.text


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="available: v1"):
        load_template(PlanMode.REGIONS, "v99")


def test_message_layout_is_one_user_turn_image_first() -> None:
    openai = openai_user_message("data:image/png;base64,AAAA", "text")
    assert openai["role"] == "user" and [p["type"] for p in openai["content"]] == ["image_url", "text"]
    local = transformers_user_message("text")
    assert [p["type"] for p in local["content"]] == ["image", "text"]


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAN_PLANNER_OPENAI__BASE_URL", "http://vllm:8000/v1/")
    monkeypatch.setenv("REPLAN_PLANNER_OPENAI__STRUCTURED_OUTPUT", "regex")
    monkeypatch.setenv("REPLAN_PLANNER_MAX_PIXELS", "1003520")
    s = PlannerSettings()
    assert s.port == 8100 and s.backend is BackendKind.OPENAI
    assert s.openai.base_url == "http://vllm:8000/v1" and s.openai.structured_output is StructuredOutput.REGEX
    assert s.max_pixels == 1003520 and s.min_pixels == 3136


def test_tiny_preset_fills_only_what_was_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAN_PLANNER_GRAMMAR__MAX_REGIONS", "3")
    s = PlannerSettings(preset="tiny")
    assert s.backend is BackendKind.TRANSFORMERS and s.is_tiny and s.transformers.num_threads == 1
    assert s.grammar.max_regions == 3 and s.grammar.max_think_chars == 32  # one bound overridden, the rest tiny
    assert PlannerSettings(preset="tiny", model="/models/replan").model == "/models/replan"


@pytest.mark.parametrize(
    ("env", "value", "where"),
    [
        ("REPLAN_PLANNER_OPENAI__BASE_URL", "vllm:8000", "openai.base_url"),
        ("REPLAN_PLANNER_PROMPT_VERSION", "v7", "prompt_version"),
        ("REPLAN_PLANNER_MIN_PIXELS", "99999999", "min_pixels"),
        ("REPLAN_PLANNER_BACKEND", "llama", "backend"),
    ],
)
def test_bad_setting_fails_naming_it(monkeypatch: pytest.MonkeyPatch, env: str, value: str, where: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError) as caught:
        PlannerSettings()
    assert where.split(".")[0] in str(caught.value)
