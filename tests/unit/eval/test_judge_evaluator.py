"""The Judge facade: prompts, the per-sample cache, failure handling, parallel dimensions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from replan_common.errors import UpstreamError
from replan_eval.judge import (
    Dimension,
    ImagePart,
    Judge,
    JudgeCache,
    JudgeInputs,
    JudgeRequest,
    ParseMethod,
    PromptTemplates,
    TextPart,
)


class ScriptedJudge:
    """A JudgeClient stand-in (the provider HTTP layer is covered in test_judge_clients.py)."""

    def __init__(self, replies: dict[str, str] | None = None, *, fail: bool = False, model: str = "m") -> None:
        self.replies = replies or {}
        self.fail = fail
        self.model = model
        self.calls: list[JudgeRequest] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    @property
    def judge_id(self) -> str:
        return f"scripted:{self.model}"

    def complete(self, request: JudgeRequest) -> str:
        with self._lock:
            self.calls.append(request)
            self.threads.add(threading.current_thread().name)
        if self.fail:
            raise UpstreamError("judge answered HTTP 503: overloaded")
        text = "".join(p.text for p in request.parts if isinstance(p, TextPart))
        for key, reply in self.replies.items():
            if f'"{key}"' in text:
                return reply
        return "no score here"


REPLIES = {
    "target_score": '{"reasoning": "right mug", "target_score": 5}',
    "effect_score": '{"reasoning": "plant looks right", "effect_score": 5}',
    "consistency_score": '{"reasoning": "lamp shifted", "consistency_score": 3}',
    "quality_score": '{"reasoning": "clean", "quality_score": 4}',
}


def test_all_four_dimensions_in_parallel(judge_inputs: JudgeInputs) -> None:
    client = ScriptedJudge(REPLIES)
    verdicts = Judge(client).evaluate_many(judge_inputs, list(Dimension))
    assert {d: v.score for d, v in verdicts.items()} == {
        Dimension.QUALITY: 4.0,
        Dimension.TARGET: 5.0,
        Dimension.EFFECT: 5.0,
        Dimension.CONSISTENCY: 3.0,
    }
    assert len(client.calls) == 4
    assert all(name.startswith("judge") for name in client.threads)


def test_cache_answers_the_second_time(tmp_path: Path, judge_inputs: JudgeInputs) -> None:
    client = ScriptedJudge(REPLIES)
    judge = Judge(client, cache=JudgeCache(tmp_path))
    first = judge.evaluate(judge_inputs, Dimension.TARGET, sample_key="17")
    second = judge.evaluate(judge_inputs, Dimension.TARGET, sample_key="17")
    assert first == second
    assert len(client.calls) == 1
    assert (tmp_path / "17" / "judge" / "target.json").is_file()


def test_cache_is_not_reused_for_another_judge_or_wording(tmp_path: Path, judge_inputs: JudgeInputs) -> None:
    Judge(ScriptedJudge(REPLIES), cache=JudgeCache(tmp_path)).evaluate(judge_inputs, Dimension.TARGET, sample_key="17")
    other_model = ScriptedJudge(REPLIES, model="other")
    Judge(other_model, cache=JudgeCache(tmp_path)).evaluate(judge_inputs, Dimension.TARGET, sample_key="17")
    assert len(other_model.calls) == 1

    texts = dict(PromptTemplates.builtin().texts)
    texts[Dimension.TARGET] += "\nBe strict."
    reworded = ScriptedJudge(REPLIES, model="other")
    Judge(reworded, templates=PromptTemplates(texts), cache=JudgeCache(tmp_path)).evaluate(
        judge_inputs, Dimension.TARGET, sample_key="17"
    )
    assert len(reworded.calls) == 1


def test_failed_calls_are_not_cached_but_unreadable_replies_are(tmp_path: Path, judge_inputs: JudgeInputs) -> None:
    cache = JudgeCache(tmp_path)
    failed = Judge(ScriptedJudge(fail=True), cache=cache).evaluate(judge_inputs, Dimension.EFFECT, sample_key="9")
    assert failed.failed and failed.error
    assert not cache.path("9", Dimension.EFFECT).exists()

    unreadable = Judge(ScriptedJudge({}), cache=cache).evaluate(judge_inputs, Dimension.EFFECT, sample_key="9")
    assert unreadable.failed and unreadable.error is None
    assert unreadable.method is ParseMethod.FAILED
    assert cache.path("9", Dimension.EFFECT).exists()


def test_corrupt_cache_file_is_ignored(tmp_path: Path, judge_inputs: JudgeInputs) -> None:
    cache = JudgeCache(tmp_path)
    path = cache.path("3", Dimension.TARGET)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    client = ScriptedJudge(REPLIES)
    assert Judge(client, cache=cache).evaluate(judge_inputs, Dimension.TARGET, sample_key="3").score == 5.0
    assert len(client.calls) == 1


@pytest.mark.parametrize("key", ["../x", "a/b", ".hidden", "", "x" * 201])
def test_unsafe_sample_keys_are_rejected(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="cannot be a directory name"):
        JudgeCache(tmp_path).path(key, Dimension.TARGET)


def test_builtin_templates_state_each_scale_and_reply_key() -> None:
    templates = PromptTemplates.builtin()
    expectations = {
        Dimension.TARGET: "Use only 1 or 5.",
        Dimension.EFFECT: "Use only 1, 3 or 5.",
        Dimension.CONSISTENCY: "Use only 1, 3 or 5.",
        Dimension.QUALITY: "Use a whole number from 1 to 5.",
    }
    for dimension, scale_line in expectations.items():
        text = templates.texts[dimension]
        assert scale_line in text
        assert f'"{dimension.value}_score"' in text
        assert '"reasoning"' in text
        assert "## How to reason\n1." in text and "\n4. " in text
        assert "**Edited Image**:" in text
    for dimension in (Dimension.TARGET, Dimension.EFFECT, Dimension.CONSISTENCY):
        text = templates.texts[dimension]
        for label in ("**Original Image**:", "**Editing Instruction**:", "**Referring Expression**:"):
            assert label in text


def test_text_cannot_inject_an_image_slot(judge_inputs: JudgeInputs) -> None:
    sneaky = JudgeInputs(
        instruction="paint {{original_image}} here",
        referring_expression="{{edited_image}}",
        edited=judge_inputs.edited,
        original=judge_inputs.original,
    )
    parts = PromptTemplates.builtin().render(Dimension.EFFECT, sneaky)
    assert sum(isinstance(p, ImagePart) for p in parts) == 2
    assert any(isinstance(p, TextPart) and "paint {{original_image}} here" in p.text for p in parts)


def test_missing_original_image_is_an_error_for_comparative_dimensions(judge_inputs: JudgeInputs) -> None:
    no_original = JudgeInputs("x", "y", edited=judge_inputs.edited)
    with pytest.raises(ValueError, match="original image"):
        PromptTemplates.builtin().render(Dimension.TARGET, no_original)
    assert PromptTemplates.builtin().render(Dimension.QUALITY, no_original)


def test_templates_from_a_directory_must_cover_every_dimension(tmp_path: Path) -> None:
    (tmp_path / "target.txt").write_text("{{edited_image}}")
    with pytest.raises(FileNotFoundError, match=r"quality\.txt, effect\.txt, consistency\.txt"):
        PromptTemplates.from_dir(tmp_path)
