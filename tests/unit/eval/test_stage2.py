"""Stage-2 reward: gate, edit, judge, binarise, combine (hand-computed expectations)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from replan_common.errors import PlanParseError, ServiceUnavailable
from replan_common.http.client import RetryPolicy
from replan_common.plan import RegionPlan
from replan_common.protocol import EditRequest, EditResponse
from replan_eval.editor_client import EditorPool, HttpEditorClient
from replan_eval.judge import Judge
from replan_eval.rewards.stage2 import RewardInput, Stage2Scorer, Stage2Status, planning_score

from .conftest import FixedScores

THINK = "The user wants the white mug replaced by a plant; only the mug changes, the rest stays the same."
VALID = (  # stage 1: f=1, q=0.75, r=0.9, total 0.905 (see test_stage1.py)
    f"<think>{THINK}</think><gen_image>keep remaining part of image unchanged.</gen_image>"
    '<region>[{"bbox_2d": [4, 2, 12, 10], "hint": "a small potted plant"}]</region>'
)


def png_b64(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


ORIGINAL = png_b64((200, 30, 30))
EDITED = png_b64((30, 200, 30))
DETAILS = {"instruction_details": {"editing_instruction": "replace the mug", "referring_expression": "the mug"}}


class FakeEditor:
    """An EditorClient stand-in (the HTTP client is tested below against MockTransport)."""

    def __init__(self, fail: Exception | None = None, delay_s: float = 0.0) -> None:
        self.requests: list[EditRequest] = []
        self.fail = fail
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def edit(self, request: EditRequest) -> EditResponse:
        with self._lock:
            self.requests.append(request)
        time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return EditResponse(
            image=EDITED, width=16, height=12, plan=RegionPlan(global_prompt="x"), settings=request.settings
        )


def scorer(editor: FakeEditor, scores: dict[str, int | None]) -> Stage2Scorer:
    return Stage2Scorer(editor, Judge(FixedScores(scores)))


def sample(response: str = VALID, extra: dict[str, object] | None = None) -> RewardInput:
    return RewardInput(response=response, image=ORIGINAL, extra_info=DETAILS if extra is None else extra)


@pytest.mark.parametrize(
    ("scores", "t", "e", "c", "planning"),
    [
        # all succeed: (1 + 1 + 1·1)/3 = 1
        ({"target": 5, "effect": 5, "consistency": 5}, 1.0, 1.0, 1.0, 1.0),
        # effect 3 fails, so consistency cannot count: (1 + 0 + 1·0)/3 = 1/3
        ({"target": 5, "effect": 3, "consistency": 5}, 1.0, 0.0, 1.0, 1 / 3),
        # wrong target, good effect, consistency 3 < 4: (0 + 1 + 0·1)/3 = 1/3
        ({"target": 1, "effect": 5, "consistency": 3}, 0.0, 1.0, 0.0, 1 / 3),
        # 4 is the threshold, off-grid 4s still pass: 1
        ({"target": 4, "effect": 4, "consistency": 4}, 1.0, 1.0, 1.0, 1.0),
        # all fail: 0
        ({"target": 1, "effect": 1, "consistency": 1}, 0.0, 0.0, 0.0, 0.0),
        # out-of-scale 7 clamps to 5 (passes); 0 clamps to 1 (fails): (1 + 1 + 0)/3
        ({"target": 7, "effect": 5, "consistency": 0}, 1.0, 1.0, 0.0, 2 / 3),
    ],
)
def test_binarised_planning_and_total(
    scores: dict[str, int | None], t: float, e: float, c: float, planning: float
) -> None:
    result = scorer(FakeEditor(), scores).score(sample())
    assert result.status is Stage2Status.SCORED
    assert (result.target, result.effect, result.consistency) == (t, e, c)
    assert result.planning == pytest.approx(planning)
    assert result.total == pytest.approx(planning + 0.2 * 0.905)


def test_planning_formula_by_hand() -> None:
    assert planning_score(1, 1, 1) == 1.0
    assert planning_score(1, 0, 1) == pytest.approx(1 / 3)
    assert planning_score(0, 1, 1) == pytest.approx(2 / 3)


def test_gate_blocks_copied_example_box_without_editing() -> None:
    # stage 1 of this response: r = 0.5 + 0.2 − 1 + 0.2 = −0.1 < 0.7; total = 0.705 (test_stage1.py)
    response = VALID.replace("[4, 2, 12, 10]", "[10, 150, 150, 210]")
    editor = FakeEditor()
    result = scorer(editor, {"target": 5, "effect": 5, "consistency": 5}).score(sample(response))
    assert result.status is Stage2Status.GATED
    assert editor.requests == []
    assert (result.planning, result.total) == (0.0, pytest.approx(0.2 * result.stage1.total))
    assert result.stage1.total == pytest.approx(0.5 + 0.3 * 0.75 + 0.2 * -0.1)


def test_gate_blocks_bad_format() -> None:
    editor = FakeEditor()
    result = scorer(editor, {}).score(sample("Sure! " + VALID))
    assert result.status is Stage2Status.GATED and editor.requests == []
    # 0.2 · (0 + 0.3·0.75 + 0.2·0.9) = 0.2 · 0.405
    assert result.total == pytest.approx(0.081)


def test_region_of_exactly_0_7_passes_the_gate() -> None:
    regions = [{"bbox_2d": [i, i, i + 3, i + 3], "hint": f"tile {i} red"} for i in range(6)]
    response = f"<think>{THINK}</think><gen_image>keep it</gen_image><region>{json.dumps(regions)}</region>"
    result = scorer(FakeEditor(), {"target": 5, "effect": 5, "consistency": 5}).score(sample(response))
    assert result.stage1.region == pytest.approx(0.7)  # 0.5 + 0.2 (hints), no count bonus for 6
    assert result.status is Stage2Status.SCORED


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"instruction_details": {"editing_instruction": "replace the mug"}},
        {"instruction_details": {"referring_expression": "the mug"}},
        {"instruction_details": {"editing_instruction": "replace the mug", "referring_expression": "  "}},
        {"instruction_details": "replace the mug"},
    ],
)
def test_missing_instruction_details_score_zero_without_editing(extra: dict[str, object]) -> None:
    editor = FakeEditor()
    result = scorer(editor, {}).score(sample(extra=extra))
    assert result.status is Stage2Status.MISSING_FIELDS
    assert (result.target, result.effect, result.consistency, result.planning) == (0, 0, 0, 0)
    assert result.total == pytest.approx(0.2 * 0.905)  # the stage-1 term still counts
    assert editor.requests == []


def test_failed_edit_scores_zero_planning_and_says_why() -> None:
    editor = FakeEditor(fail=PlanParseError("regions[0].bbox is degenerate", code="degenerate_bbox"))
    result = scorer(editor, {"target": 5, "effect": 5, "consistency": 5}).score(sample())
    assert result.status is Stage2Status.EDIT_FAILED
    assert result.planning == 0.0
    assert result.error is not None and "degenerate_bbox" in result.error


def test_one_failed_judge_dimension_is_zero_for_that_dimension_only() -> None:
    result = scorer(FakeEditor(), {"target": 5, "effect": 5, "consistency": None}).score(sample())
    assert result.status is Stage2Status.SCORED
    assert result.planning == pytest.approx(2 / 3)  # (1 + 1 + 0·1)/3
    assert result.error is not None and "consistency" in result.error


def test_editor_receives_the_stripped_response_with_the_reward_settings() -> None:
    editor = FakeEditor()
    scorer(editor, {"target": 5, "effect": 5, "consistency": 5}).score(sample("\n  " + VALID + "\n"))
    (request,) = editor.requests
    assert request.plan_text == VALID
    assert request.image == ORIGINAL
    assert request.settings.expand_value == 0.15
    assert request.settings.rule_switch_ratio == 0.0


def test_batch_keeps_order_and_runs_concurrently() -> None:
    editor = FakeEditor(delay_s=0.05)
    samples = [sample(), sample("no tags"), sample(extra={}), sample()]
    results = scorer(editor, {"target": 5, "effect": 5, "consistency": 5}).score_batch(samples, max_workers=4)
    assert [r.status for r in results] == [
        Stage2Status.SCORED,
        Stage2Status.GATED,
        Stage2Status.MISSING_FIELDS,
        Stage2Status.SCORED,
    ]
    assert len(editor.requests) == 2


def test_reward_input_accepts_the_original_field_names() -> None:
    parsed = RewardInput.model_validate(
        {"response": VALID, "input_image_base64": [ORIGINAL], "extra_info": DETAILS, "ground_truth": "x"}
    )
    assert parsed.image == ORIGINAL
    assert parsed.instruction_details() == ("replace the mug", "the mug")


def test_editor_pool_spreads_concurrent_edits() -> None:
    editors = [FakeEditor(delay_s=0.05), FakeEditor(delay_s=0.05)]
    pool = EditorPool(editors)
    request = EditRequest(image=ORIGINAL, plan_text=VALID)
    threads = [threading.Thread(target=pool.edit, args=(request,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [len(e.requests) for e in editors] == [2, 2]


def edit_response_json(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    reply = EditResponse(
        image=EDITED, width=16, height=12, plan=RegionPlan(global_prompt="keep"), settings=body["settings"]
    )
    return httpx.Response(200, content=reply.model_dump_json(), headers={"content-type": "application/json"})


def test_http_editor_posts_edit_request_json_to_v1_edit() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return edit_response_json(request)

    client = HttpEditorClient("http://editor.test:8000/", transport=httpx.MockTransport(handler))
    response = client.edit(EditRequest(image=ORIGINAL, plan_text=VALID))
    assert response.image == EDITED
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "http://editor.test:8000/v1/edit")
    body = json.loads(request.content)
    assert body["plan_text"] == VALID and "plan" not in body and "instruction" not in body


def test_http_editor_keeps_the_editors_error_code() -> None:
    envelope = {"error": {"message": "regions[0].bbox has no area", "type": "invalid_request_error",
                          "code": "degenerate_bbox", "param": "regions[0].bbox"}}  # fmt: skip
    client = HttpEditorClient(
        "http://editor.test", transport=httpx.MockTransport(lambda _: httpx.Response(422, json=envelope))
    )
    with pytest.raises(Exception) as caught:
        client.edit(EditRequest(image=ORIGINAL, plan_text=VALID))
    assert getattr(caught.value, "code", None) == "degenerate_bbox"
    assert getattr(caught.value, "status", None) == 422


def test_http_editor_retries_while_the_editor_is_down() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused")
        return edit_response_json(request)

    client = HttpEditorClient(
        "http://editor.test", retry=RetryPolicy(attempts=3, backoff_s=0.0), transport=httpx.MockTransport(handler)
    )
    assert client.edit(EditRequest(image=ORIGINAL, plan_text=VALID)).image == EDITED
    down = HttpEditorClient(
        "http://editor.test",
        retry=RetryPolicy(attempts=2, backoff_s=0.0),
        transport=httpx.MockTransport(lambda _: (_ for _ in ()).throw(httpx.ConnectError("refused"))),
    )
    with pytest.raises(ServiceUnavailable):
        down.edit(EditRequest(image=ORIGINAL, plan_text=VALID))
