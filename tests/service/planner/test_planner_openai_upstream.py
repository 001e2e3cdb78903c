"""The planner app with the openai backend against recorded vLLM responses replayed at the HTTP layer.

Covers the issue's "Must show" for the openai backend: a good answer (boxes mapped to original pixels,
clips and drops reported), a malformed answer (502 naming the parser's code), 500 (retried, then 502),
a timeout (retried, then 504), connection refused (503), and 4xx (not retried, 502).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi.testclient import TestClient
from planner_testkit import ReplayUpstream, png_b64, recording

from replan_common.plan import KEEP_UNCHANGED_PROMPT
from replan_common.protocol import PlanResponse
from replan_planner.app import create_app
from replan_planner.settings import PlannerSettings
from tests.support.processes import free_port

INSTRUCTION = "replace the used cup on the desk with a small potted plant"


def settings(base_url: str = "http://vllm.test/v1", **openai: object) -> PlannerSettings:
    return PlannerSettings(
        backend="openai",
        openai={"base_url": base_url, "backoff_s": 0.0, "backoff_max_s": 0.0, **openai},
    )


@contextmanager
def planner(upstream: ReplayUpstream | None, config: PlannerSettings | None = None) -> Iterator[TestClient]:
    app = create_app(config or settings(), transport=upstream.transport() if upstream else None)
    with TestClient(app) as client:
        yield client


def plan(client: TestClient, width: int = 640, height: int = 480, **options: object) -> httpx.Response:
    return client.post(
        "/v1/plan", json={"image": png_b64(width, height), "instruction": INSTRUCTION, "options": options}
    )


def metric(client: TestClient, name: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_good_answer_maps_boxes_to_original_pixels_and_reports_adjustments(
    replay: Callable[..., ReplayUpstream],
) -> None:
    upstream = replay((200, recording("chat_completion_plan.json")))
    with planner(upstream) as client:
        response = plan(client, 4000, 3000)
    assert response.status_code == 200, response.text
    body = PlanResponse.model_validate(response.json())
    assert body.model == "TainU/RePlan-Qwen2.5-VL-7B"
    assert body.plan.global_prompt == KEEP_UNCHANGED_PROMPT
    assert body.raw_text == recording("chat_completion_plan.json")["choices"][0]["message"]["content"]
    # The model saw 4004x2996 (smart_resize of 4000x3000 with the training pixel limits).
    sx, sy = 4000 / 4004, 3000 / 2996
    first, lamp = body.plan.regions
    assert first.bbox == pytest.approx((2860 * sx, 1640 * sy, 3420 * sx, 2380 * sy), abs=0.01)
    assert first.hint.startswith("a small potted plant")
    assert lamp.bbox == pytest.approx((3900 * sx, 100 * sy, 4000, 500 * sy), abs=0.01)
    actions = {(a.index, a.action) for a in body.adjustments}
    assert actions == {(1, "clipped"), (2, "dropped"), (3, "dropped")}
    reasons = {a.index: a.reason for a in body.adjustments}
    assert "bbox_outside_image" in reasons[2] and "degenerate_bbox" in reasons[3]
    assert body.usage is not None and body.usage.completion_tokens == 141
    assert {"decode_ms", "generate_ms", "parse_ms", "total_ms"} <= set(body.timings_ms)


def test_request_is_one_user_turn_with_the_image_first_and_structured_output(
    replay: Callable[..., ReplayUpstream],
) -> None:
    upstream = replay((200, recording("chat_completion_plan.json")))
    with planner(upstream) as client:
        assert plan(client, temperature=0.0, seed=7).status_code == 200
    (sent,) = upstream.chat_requests
    (message,) = sent["messages"]
    assert message["role"] == "user"
    image_part, text_part = message["content"]
    assert image_part["type"] == "image_url" and image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert text_part["type"] == "text"
    assert text_part["text"].endswith("The user instruction:\n" + INSTRUCTION)
    assert sent["model"] == "TainU/RePlan-Qwen2.5-VL-7B"
    assert sent["temperature"] == 0.0 and sent["seed"] == 7 and sent["max_tokens"] == 2048
    assert "root ::=" in sent["structured_outputs"]["grammar"]
    assert "X-Request-ID" in upstream.headers[0]


def test_rephrase_mode_returns_a_global_prompt_only(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay((200, recording("chat_completion_rephrase.json")))
    with planner(upstream) as client:
        response = plan(client, 640, 480, mode="rephrase")
    assert response.status_code == 200, response.text
    body = PlanResponse.model_validate(response.json())
    assert body.plan.regions == () and body.plan.global_prompt.startswith("Replace the stained white cup")
    text = upstream.chat_requests[0]["messages"][0]["content"][1]["text"]
    assert "<region>" not in text.split("The user instruction:")[0]  # the rephrase template asks for no regions


def test_malformed_answer_is_502_naming_the_parse_error(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay((200, recording("chat_completion_malformed.json")))
    with planner(upstream) as client:
        response = plan(client)
        error = response.json()["error"]
        assert response.status_code == 502
        assert error["code"] == "planner_output_invalid"
        assert error["message"].startswith("[unclosed_tag]")
        assert "cut off at the token limit" in error["message"]
        assert metric(client, 'replan_planner_output_invalid_total{code="unclosed_tag"}') == 1
        assert client.get("/healthz").status_code == 200
    assert len(upstream.chat_requests) == 1  # a bad answer is not an upstream failure: no retry


def test_upstream_500_is_retried_then_502(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay((500, recording("error_500.json")))
    with planner(upstream) as client:
        response = plan(client)
        assert metric(client, 'replan_planner_upstream_errors_total{kind="http_5xx"}') == 3
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "planner_upstream_error"
    assert "EngineCore encountered an issue" in error["message"]
    assert len(upstream.chat_requests) == 3


def test_upstream_500_then_success_recovers(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay((500, recording("error_500.json")), (200, recording("chat_completion_plan.json")))
    with planner(upstream) as client:
        assert plan(client).status_code == 200
    assert len(upstream.chat_requests) == 2


def test_upstream_timeout_is_retried_then_504(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay(httpx.ReadTimeout("timed out"))
    with planner(upstream) as client:
        response = plan(client)
        assert metric(client, 'replan_planner_upstream_errors_total{kind="timeout"}') == 3
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "planner_upstream_timeout"
    assert len(upstream.chat_requests) == 3


def test_upstream_4xx_is_not_retried_and_is_502(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay((404, recording("error_404.json")))
    with planner(upstream) as client:
        response = plan(client)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "planner_upstream_rejected"
    assert "does not exist" in error["message"]
    assert len(upstream.chat_requests) == 1


def test_upstream_429_is_retried_and_ends_as_503_with_retry_after(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay((429, {"error": {"message": "too many requests", "type": "RateLimitError", "code": 429}}))
    with planner(upstream) as client:
        response = plan(client)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "planner_upstream_overloaded"
    assert response.headers["Retry-After"] == "5"
    assert len(upstream.chat_requests) == 3


def test_answer_without_content_is_502_bad_response(replay: Callable[..., ReplayUpstream]) -> None:
    upstream = replay((200, {"id": "x", "object": "chat.completion", "choices": []}))
    with planner(upstream) as client:
        response = plan(client)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "planner_upstream_bad_response"


def test_connection_refused_is_503_and_not_ready() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: a real connection refusal
    with planner(None, settings(dead)) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "unreachable" in ready.json()["detail"]
        response = plan(client, 300, 200)
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "planner_upstream_unavailable"
    assert response.headers["Retry-After"] == "5"


def test_ready_only_when_the_configured_model_is_served(replay: Callable[..., ReplayUpstream]) -> None:
    with planner(replay((200, {}))) as client:
        assert client.get("/readyz").status_code == 200
    wrong = PlannerSettings(backend="openai", model="some/other-model", openai={"base_url": "http://vllm.test/v1"})
    with planner(replay((200, {})), wrong) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 503 and "REPLAN_PLANNER_MODEL" in ready.json()["detail"]


@pytest.mark.parametrize(
    ("mode", "field"),
    [
        ("off", None),
        ("regex", "structured_outputs"),
        ("structural_tag", "response_format"),
        ("guided_grammar", "guided_grammar"),
    ],
)
def test_structured_output_mode_sets_the_request_field(
    replay: Callable[..., ReplayUpstream], mode: str, field: str | None
) -> None:
    upstream = replay((200, recording("chat_completion_plan.json")))
    with planner(upstream, settings(structured_output=mode)) as client:
        assert plan(client, 300, 200).status_code == 200
    sent = upstream.chat_requests[0]
    extras = {"structured_outputs", "response_format", "guided_grammar", "guided_regex"} & set(sent)
    assert extras == ({field} if field else set())
