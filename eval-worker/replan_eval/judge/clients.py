"""Judge providers: any OpenAI-compatible chat endpoint (vLLM, GPT) and Gemini's REST API.

A client turns rendered prompt parts into one HTTP request and returns the reply text; it knows nothing
of scales or parsing. Both speak plain httpx (no vendor SDK), take an optional transport so tests can
replay recorded responses, send images inline as base64, decode at temperature 0, and retry transient
failures through `replan_eval.http_retry`. Building a client opens no connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import httpx
from pydantic import SecretStr

from replan_common.errors import UpstreamError
from replan_eval.http_retry import RetryPolicy, post_json
from replan_eval.judge.prompts import ImagePart, PromptPart, TextPart

__all__ = ["GeminiJudgeClient", "JudgeClient", "JudgeRequest", "OpenAIChatJudgeClient"]

GEMINI_API_BASE = "https://generativelanguage.googleapis.com/v1beta"


@dataclass(frozen=True)
class JudgeRequest:
    """One judging call: the interleaved prompt and the JSON schema the reply should follow."""

    parts: list[PromptPart]
    response_schema: dict[str, object]


class JudgeClient(Protocol):
    """Anything that can answer a `JudgeRequest` with the model's reply text."""

    @property
    def judge_id(self) -> str:
        """``provider:model``; recorded with each cached verdict."""
        ...

    def complete(self, request: JudgeRequest) -> str:
        """The reply text. Raises a `replan_common.errors.ReplanError` when the call fails."""
        ...


def _auth_headers(api_key: SecretStr | None, scheme: Literal["bearer", "goog"]) -> dict[str, str]:
    if api_key is None or not api_key.get_secret_value():
        return {}
    if scheme == "bearer":
        return {"Authorization": f"Bearer {api_key.get_secret_value()}"}
    return {"x-goog-api-key": api_key.get_secret_value()}


class OpenAIChatJudgeClient:
    """``POST {base_url}/chat/completions`` with one user turn of text and ``image_url`` data-URI parts.

    Args:
        base_url: the API root including ``/v1``, e.g. ``http://vllm:8000/v1``.
        response_format: ``"off"`` relies on the prompt's reply instructions (works everywhere);
            ``"json_schema"`` also asks the server for schema-constrained output (OpenAI, recent vLLM).
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: SecretStr | None = None,
        max_tokens: int = 1024,
        timeout_s: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        response_format: Literal["off", "json_schema"] = "off",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"judge base_url must start with http:// or https://, got {base_url!r}")
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._model = model
        self._headers = _auth_headers(api_key, "bearer")
        self._max_tokens = max_tokens
        self._retry = retry
        self._response_format = response_format
        self._client = httpx.Client(timeout=timeout_s, transport=transport)

    @property
    def judge_id(self) -> str:
        return f"openai:{self._model}"

    def build_body(self, request: JudgeRequest) -> dict[str, object]:
        content: list[dict[str, object]] = []
        for part in request.parts:
            if isinstance(part, TextPart):
                content.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart):
                content.append({"type": "image_url", "image_url": {"url": part.image.data_uri}})
        body: dict[str, object] = {
            "model": self._model,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0.0,
            "max_tokens": self._max_tokens,
        }
        if self._response_format == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judgement", "schema": request.response_schema},
            }
        return body

    def complete(self, request: JudgeRequest) -> str:
        reply = post_json(
            self._client,
            self._url,
            self.build_body(request),
            what=f"judge {self.judge_id}",
            headers=self._headers,
            policy=self._retry,
        )
        try:
            content = reply["choices"][0]["message"]["content"]  # type: ignore[index]
        except (KeyError, IndexError, TypeError) as exc:
            raise UpstreamError(
                f"judge {self.judge_id} replied without choices[0].message.content", code="judge_bad_reply"
            ) from exc
        if not isinstance(content, str):
            raise UpstreamError(f"judge {self.judge_id} returned no text (refusal?)", code="judge_empty_reply")
        return content

    def close(self) -> None:
        self._client.close()


def _gemini_schema(schema: object) -> object:
    """Our JSON schema in Gemini's OpenAPI subset: upper-case type names, integer enums dropped."""
    if isinstance(schema, dict):
        out: dict[str, object] = {}
        for key, value in schema.items():
            if key == "type" and isinstance(value, str):
                out[key] = value.upper()
            elif key == "enum" and schema.get("type") == "integer":
                continue  # Gemini enums are string-only; the prompt states the allowed values
            else:
                out[key] = _gemini_schema(value)
        if isinstance(schema.get("properties"), dict):
            out["propertyOrdering"] = list(schema["properties"])
        return out
    if isinstance(schema, list):
        return [_gemini_schema(v) for v in schema]
    return schema


class GeminiJudgeClient:
    """``POST {base_url}/models/{model}:generateContent`` with inline images and a JSON response schema."""

    def __init__(
        self,
        *,
        model: str,
        api_key: SecretStr | None,
        base_url: str = GEMINI_API_BASE,
        max_output_tokens: int = 4096,
        timeout_s: float = 300.0,
        retry: RetryPolicy = RetryPolicy(),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = f"{base_url.rstrip('/')}/models/{model}:generateContent"
        self._model = model
        self._headers = _auth_headers(api_key, "goog")
        self._max_output_tokens = max_output_tokens
        self._retry = retry
        self._client = httpx.Client(timeout=timeout_s, transport=transport)

    @property
    def judge_id(self) -> str:
        return f"gemini:{self._model}"

    def build_body(self, request: JudgeRequest) -> dict[str, object]:
        parts: list[dict[str, object]] = []
        for part in request.parts:
            if isinstance(part, TextPart):
                parts.append({"text": part.text})
            elif isinstance(part, ImagePart):
                parts.append({"inlineData": {"mimeType": part.image.mime, "data": part.image.b64}})
        return {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                "temperature": 0.0,
                "maxOutputTokens": self._max_output_tokens,
                "responseMimeType": "application/json",
                "responseSchema": _gemini_schema(request.response_schema),
            },
        }

    def complete(self, request: JudgeRequest) -> str:
        reply = post_json(
            self._client,
            self._url,
            self.build_body(request),
            what=f"judge {self.judge_id}",
            headers=self._headers,
            policy=self._retry,
        )
        candidates = reply.get("candidates") if isinstance(reply, dict) else None
        if not candidates:
            feedback = reply.get("promptFeedback") if isinstance(reply, dict) else None
            raise UpstreamError(
                f"judge {self.judge_id} returned no candidates (prompt feedback: {feedback})",
                code="judge_blocked",
            )
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        # Thought summaries (when requested) come as parts flagged "thought"; the answer is the rest.
        text = "".join(p.get("text", "") for p in parts if isinstance(p, dict) and not p.get("thought"))
        if not text:
            raise UpstreamError(
                f"judge {self.judge_id} returned no text (finishReason={candidate.get('finishReason')})",
                code="judge_empty_reply",
            )
        return text

    def close(self) -> None:
        self._client.close()
