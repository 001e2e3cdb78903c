"""`make_judge_client`: a provider name and its options → a `JudgeClient` (used by run configs and settings)."""

from __future__ import annotations

from enum import Enum

import httpx
from pydantic import SecretStr

from replan_eval.http_retry import RetryPolicy
from replan_eval.judge.clients import GeminiJudgeClient, JudgeClient, OpenAIChatJudgeClient

__all__ = ["JudgeProvider", "make_judge_client"]


class JudgeProvider(str, Enum):
    OPENAI = "openai"
    GEMINI = "gemini"
    NONE = "none"


def make_judge_client(
    provider: JudgeProvider,
    *,
    model: str,
    base_url: str | None = None,
    api_key: SecretStr | None = None,
    max_tokens: int = 1024,
    timeout_s: float = 300.0,
    max_attempts: int = 3,
    transport: httpx.BaseTransport | None = None,
) -> JudgeClient:
    """An OpenAI-compatible client (``base_url`` required) or a Gemini client (``base_url`` optional)."""
    retry = RetryPolicy(max_attempts=max_attempts)
    if provider is JudgeProvider.GEMINI:
        extra = {"base_url": base_url} if base_url else {}
        return GeminiJudgeClient(
            model=model,
            api_key=api_key,
            max_output_tokens=max_tokens,
            timeout_s=timeout_s,
            retry=retry,
            transport=transport,
            **extra,
        )
    if provider is JudgeProvider.OPENAI:
        if not base_url:
            raise ValueError("an OpenAI-compatible judge needs a base_url such as http://vllm:8000/v1")
        return OpenAIChatJudgeClient(
            base_url=base_url,
            model=model,
            api_key=api_key,
            max_tokens=max_tokens,
            timeout_s=timeout_s,
            retry=retry,
            transport=transport,
        )
    raise ValueError(f"judge provider {provider.value!r} makes no client")
