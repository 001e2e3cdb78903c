"""Judge provider clients against recorded HTTP replies (httpx.MockTransport at the HTTP layer)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from replan_common.errors import ServiceUnavailable, UpstreamError, UpstreamTimeout
from replan_eval.http_retry import RetryPolicy
from replan_eval.judge import (
    Dimension,
    GeminiJudgeClient,
    Judge,
    JudgeInputs,
    JudgeRequest,
    OpenAIChatJudgeClient,
    ParseMethod,
    PromptTemplates,
    spec,
)

from .conftest import recorded

NO_WAIT = RetryPolicy(max_attempts=3, initial_delay_s=0.0)


class Recorder:
    """A MockTransport handler that replays scripted replies and keeps every request it saw."""

    def __init__(self, *replies: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]) -> None:
        self.replies = list(replies)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    @property
    def bodies(self) -> list[dict[str, object]]:
        return [json.loads(r.content) for r in self.requests]


def openai_client(recorder: Recorder, **kwargs: object) -> OpenAIChatJudgeClient:
    return OpenAIChatJudgeClient(
        base_url="http://judge.test/v1",
        model="Qwen/Qwen2.5-VL-72B-Instruct",
        api_key=SecretStr("sk-test"),
        retry=NO_WAIT,
        transport=httpx.MockTransport(recorder),
        **kwargs,  # type: ignore[arg-type]
    )


def request_for(dimension: Dimension, inputs: JudgeInputs) -> JudgeRequest:
    return JudgeRequest(PromptTemplates.builtin().render(dimension, inputs), spec(dimension).json_schema())


def test_openai_request_shape_and_recorded_reply(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.Response(200, json=recorded("openai_chat_completion_target.json")))
    judge = Judge(openai_client(recorder, max_tokens=777))
    verdict = judge.evaluate(judge_inputs, Dimension.TARGET)

    assert (verdict.score, verdict.method, verdict.judge) == (5.0, ParseMethod.FENCED_JSON, judge.judge_id)
    assert verdict.reasoning.startswith("1. The instruction asks")

    (request,) = recorder.requests
    assert request.url == "http://judge.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test"
    body = recorder.bodies[0]
    assert body["model"] == "Qwen/Qwen2.5-VL-72B-Instruct"
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 777
    assert "response_format" not in body
    (message,) = body["messages"]  # type: ignore[misc]
    assert message["role"] == "user"
    kinds = [part["type"] for part in message["content"]]
    assert kinds == ["text", "image_url", "text", "image_url", "text"]
    urls = [p["image_url"]["url"] for p in message["content"] if p["type"] == "image_url"]
    assert urls == [judge_inputs.original.data_uri, judge_inputs.edited.data_uri]  # type: ignore[union-attr]
    texts = "".join(p["text"] for p in message["content"] if p["type"] == "text")
    for label in ("**Original Image**:", "**Editing Instruction**:", "**Referring Expression**:", "**Edited Image**:"):
        assert label in texts
    assert judge_inputs.instruction in texts
    assert judge_inputs.referring_expression in texts
    assert "target_score" in texts


def test_openai_json_schema_response_format_is_opt_in(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.Response(200, json=recorded("openai_chat_completion_target.json")))
    openai_client(recorder, response_format="json_schema").complete(request_for(Dimension.TARGET, judge_inputs))
    fmt = recorder.bodies[0]["response_format"]
    assert fmt["type"] == "json_schema"  # type: ignore[index]
    assert fmt["json_schema"]["schema"]["required"] == ["reasoning", "target_score"]  # type: ignore[index]


def test_no_api_key_sends_no_authorization_header(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.Response(200, json=recorded("openai_chat_completion_target.json")))
    client = OpenAIChatJudgeClient(
        base_url="http://judge.test/v1", model="m", retry=NO_WAIT, transport=httpx.MockTransport(recorder)
    )
    client.complete(request_for(Dimension.TARGET, judge_inputs))
    assert "authorization" not in recorder.requests[0].headers


def test_5xx_is_retried_then_succeeds(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(
        httpx.Response(503, text="overloaded"),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(200, json=recorded("openai_chat_completion_target.json")),
    )
    text = openai_client(recorder).complete(request_for(Dimension.TARGET, judge_inputs))
    assert '"target_score": 5' in text
    assert len(recorder.requests) == 3


def test_backoff_is_exponential_and_honours_retry_after(judge_inputs: JudgeInputs) -> None:
    slept: list[float] = []
    recorder = Recorder(
        httpx.Response(500),
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(200, json=recorded("openai_chat_completion_target.json")),
    )
    from replan_eval.http_retry import post_json

    with httpx.Client(transport=httpx.MockTransport(recorder)) as http:
        post_json(
            http,
            "http://judge.test/v1/chat/completions",
            {},
            what="judge",
            policy=RetryPolicy(max_attempts=3, initial_delay_s=1.0, multiplier=2.0, max_delay_s=30.0),
            sleep=slept.append,
        )
    assert slept == [1.0, 7.0]  # 1·2⁰, then max(1·2¹, Retry-After 7)


def test_4xx_is_not_retried(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.Response(400, json=recorded("openai_error_400.json")))
    with pytest.raises(UpstreamError) as caught:
        openai_client(recorder).complete(request_for(Dimension.TARGET, judge_inputs))
    assert len(recorder.requests) == 1
    assert caught.value.code == "upstream_rejected"
    assert "HTTP 400" in caught.value.message and "maximum context length" in caught.value.message


def test_connection_errors_are_retried_until_attempts_run_out(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.ConnectError("connection refused"))
    with pytest.raises(ServiceUnavailable):
        openai_client(recorder).complete(request_for(Dimension.TARGET, judge_inputs))
    assert len(recorder.requests) == 3


def test_timeouts_are_retried_then_reported(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(
        httpx.ReadTimeout("slow"), httpx.Response(200, json=recorded("openai_chat_completion_target.json"))
    )
    assert openai_client(recorder).complete(request_for(Dimension.TARGET, judge_inputs))
    recorder = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(UpstreamTimeout):
        openai_client(recorder).complete(request_for(Dimension.TARGET, judge_inputs))


def test_failed_call_becomes_a_zero_verdict_not_an_exception(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.Response(503))
    verdict = Judge(openai_client(recorder)).evaluate(judge_inputs, Dimension.EFFECT)
    assert verdict.failed and verdict.value == 0.0
    assert verdict.method is ParseMethod.FAILED
    assert verdict.error is not None and "503" in verdict.error


def test_refusal_with_null_content_fails_the_verdict(judge_inputs: JudgeInputs) -> None:
    reply = recorded("openai_chat_completion_target.json")
    reply["choices"][0]["message"]["content"] = None  # type: ignore[index]
    verdict = Judge(openai_client(Recorder(httpx.Response(200, json=reply)))).evaluate(judge_inputs, Dimension.TARGET)
    assert verdict.failed and verdict.error is not None


def gemini_client(recorder: Recorder) -> GeminiJudgeClient:
    return GeminiJudgeClient(
        model="gemini-2.5-pro",
        api_key=SecretStr("g-test"),
        base_url="https://gemini.test/v1beta",
        retry=NO_WAIT,
        transport=httpx.MockTransport(recorder),
    )


def test_gemini_request_shape_and_recorded_reply(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.Response(200, json=recorded("gemini_generate_content_effect.json")))
    verdict = Judge(gemini_client(recorder)).evaluate(judge_inputs, Dimension.EFFECT)
    assert (verdict.score, verdict.method, verdict.judge) == (3.0, ParseMethod.JSON, "gemini:gemini-2.5-pro")
    assert "OPEN DIALY" in verdict.reasoning

    (request,) = recorder.requests
    assert request.url == "https://gemini.test/v1beta/models/gemini-2.5-pro:generateContent"
    assert request.headers["x-goog-api-key"] == "g-test"
    body = recorder.bodies[0]
    config = body["generationConfig"]
    assert config["temperature"] == 0.0  # type: ignore[index]
    assert config["maxOutputTokens"] == 4096  # type: ignore[index]
    assert config["responseMimeType"] == "application/json"  # type: ignore[index]
    schema = config["responseSchema"]  # type: ignore[index]
    assert schema["type"] == "OBJECT"
    assert schema["properties"]["effect_score"]["type"] == "INTEGER"
    assert "enum" not in schema["properties"]["effect_score"]
    assert schema["propertyOrdering"] == ["reasoning", "effect_score"]
    assert schema["required"] == ["reasoning", "effect_score"]
    parts = body["contents"][0]["parts"]  # type: ignore[index]
    assert [next(iter(p)) for p in parts] == ["text", "inlineData", "text", "inlineData", "text"]
    assert parts[1]["inlineData"] == {"mimeType": "image/png", "data": judge_inputs.original.b64}  # type: ignore[union-attr]


def test_gemini_blocked_prompt_is_a_failed_verdict(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(httpx.Response(200, json=recorded("gemini_blocked.json")))
    verdict = Judge(gemini_client(recorder)).evaluate(judge_inputs, Dimension.EFFECT)
    assert verdict.failed
    assert verdict.error is not None and "blockReason" in verdict.error


def test_gemini_thought_parts_are_skipped(judge_inputs: JudgeInputs) -> None:
    reply = recorded("gemini_generate_content_effect.json")
    parts = reply["candidates"][0]["content"]["parts"]  # type: ignore[index]
    parts.insert(0, {"text": "thinking about a 1 here", "thought": True})
    verdict = Judge(gemini_client(Recorder(httpx.Response(200, json=reply)))).evaluate(judge_inputs, Dimension.EFFECT)
    assert verdict.score == 3.0


def test_quality_prompt_shows_only_the_edited_image(judge_inputs: JudgeInputs) -> None:
    recorder = Recorder(
        httpx.Response(200, json={"candidates": [{"content": {"parts": [{"text": '{"quality_score": 4}'}]}}]})
    )
    verdict = Judge(gemini_client(recorder)).evaluate(judge_inputs, Dimension.QUALITY)
    assert verdict.score == 4.0
    parts = recorder.bodies[0]["contents"][0]["parts"]  # type: ignore[index]
    images = [p["inlineData"]["data"] for p in parts if "inlineData" in p]
    assert images == [judge_inputs.edited.b64]
