"""Fixtures for the eval worker's unit tests: recorded provider replies and tiny images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from replan_eval.judge import JudgeImage, JudgeInputs, JudgeRequest, TextPart

DATA_DIR = Path(__file__).parent / "data"


def recorded(name: str) -> dict[str, object]:
    """A recorded provider reply from ``data/``."""
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture
def judge_inputs() -> JudgeInputs:
    original = JudgeImage.from_pil(Image.new("RGB", (16, 12), (200, 30, 30)))
    edited = JudgeImage.from_pil(Image.new("RGB", (16, 12), (30, 200, 30)))
    return JudgeInputs(
        instruction="replace the used cup on the desk with a small potted plant",
        referring_expression="the white mug to the right of the laptop",
        edited=edited,
        original=original,
    )


class FixedScores:
    """A JudgeClient stand-in answering each dimension with a fixed score (None: an unreadable reply)."""

    def __init__(self, scores: dict[str, int | None]) -> None:
        self.scores = scores
        self.calls = 0

    @property
    def judge_id(self) -> str:
        return "fixed:test"

    def complete(self, request: JudgeRequest) -> str:
        self.calls += 1
        text = "".join(p.text for p in request.parts if isinstance(p, TextPart))
        for dimension, score in self.scores.items():
            if f'"{dimension}_score"' in text:
                return "I cannot tell." if score is None else f'{{"reasoning": "r", "{dimension}_score": {score}}}'
        raise AssertionError("prompt for an unexpected dimension")
