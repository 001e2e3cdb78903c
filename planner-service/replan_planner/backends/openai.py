"""The `openai` backend: the planner model behind any OpenAI-compatible chat endpoint (vLLM first of all).

Owns the chat-completions request (the single user turn of `prompts`, the image as a data URI already
resized to the model's view, structured-output extras as configured), retries and the typed errors:

=============================================  ==========  ====================================  ======
upstream outcome                               retried     our error (code)                      status
=============================================  ==========  ====================================  ======
connection refused / DNS / connect timeout     yes         ``planner_upstream_unavailable``      503
read/write/pool timeout                        yes         ``planner_upstream_timeout``          504
HTTP 5xx                                       yes         ``planner_upstream_error``            502
HTTP 429                                       yes         ``planner_upstream_overloaded``       503
other HTTP 4xx (our request was refused)       no          ``planner_upstream_rejected``         502
2xx that is not a chat completion              no          ``planner_upstream_bad_response``     502
=============================================  ==========  ====================================  ======

Backoff is exponential (`RetryPolicy`), lengthened to the upstream's Retry-After when it sends one.
Tests inject an `httpx.MockTransport` replaying recorded vLLM responses.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from PIL import Image

from replan_common.context import REQUEST_ID_HEADER, get_request_id
from replan_common.errors import ReplanError, ServiceUnavailable, UpstreamError, UpstreamTimeout
from replan_common.geometry import Size
from replan_common.http.client import RetryPolicy
from replan_common.protocol import PlanMode
from replan_planner.backends.base import BackendState, Generation, GenerationInput
from replan_planner.grammar import GrammarLimits, PlanGrammar
from replan_planner.metrics import PlannerMetrics, UpstreamErrorKind
from replan_planner.prompts import openai_user_message
from replan_planner.settings import OpenAISettings, StructuredOutput

__all__ = ["OpenAIChatBackend", "structured_output_extras"]

logger = logging.getLogger(__name__)

_MESSAGE_CHARS = 300


def structured_output_extras(mode: StructuredOutput, grammar: PlanGrammar) -> dict[str, Any]:
    """The request fields that ask the server to constrain the answer (see `StructuredOutput`)."""
    if mode is StructuredOutput.GRAMMAR:
        return {"structured_outputs": {"grammar": grammar.ebnf()}}
    if mode is StructuredOutput.REGEX:
        return {"structured_outputs": {"regex": grammar.regex()}}
    if mode is StructuredOutput.GUIDED_GRAMMAR:
        return {"guided_grammar": grammar.ebnf()}
    if mode is StructuredOutput.GUIDED_REGEX:
        return {"guided_regex": grammar.regex()}
    if mode is StructuredOutput.STRUCTURAL_TAG and grammar.mode is PlanMode.REGIONS:
        return {"response_format": grammar.structural_tag()}
    return {}


class OpenAIChatBackend:
    """Calls `POST {base_url}/chat/completions`; readiness is `GET {base_url}/models`."""

    name = "openai"

    def __init__(
        self,
        settings: OpenAISettings,
        *,
        model: str,
        min_pixels: int,
        max_pixels: int,
        grammar: GrammarLimits,
        metrics: PlannerMetrics | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self._model = model
        self._pixels = {"min_pixels": min_pixels, "max_pixels": max_pixels}
        self._grammars = {mode: PlanGrammar(grammar, mode) for mode in PlanMode}
        self._metrics = metrics
        self._transport = transport
        self._sleep = sleep
        self._retry = RetryPolicy(
            attempts=settings.max_attempts, backoff_s=settings.backoff_s, backoff_max_s=settings.backoff_max_s
        )
        self._client: httpx.AsyncClient | None = None

    @property
    def model(self) -> str:
        return self._model

    async def start(self) -> None:
        headers = {}
        if self.settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self.settings.api_key.get_secret_value()}"
        self._client = httpx.AsyncClient(
            base_url=self.settings.base_url + "/",
            timeout=httpx.Timeout(self.settings.timeout_s, connect=self.settings.connect_timeout_s),
            headers=headers,
            transport=self._transport,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def state(self) -> BackendState:
        client = self._require_client()
        where = f"{self.settings.base_url}/models"
        try:
            response = await client.get("models", timeout=self.settings.ready_timeout_s)
        except httpx.HTTPError as exc:
            return BackendState(False, "unreachable", f"{where} is unreachable ({type(exc).__name__})")
        if not response.is_success:
            return BackendState(False, "unreachable", f"{where} answered HTTP {response.status_code}")
        try:
            served = [str(m.get("id")) for m in response.json().get("data", []) if isinstance(m, dict)]
        except (ValueError, AttributeError):
            return BackendState(False, "unreachable", f"{where} did not answer with a model list")
        if served and self._model not in served:
            return BackendState(
                False,
                "degraded",
                f"the upstream serves {', '.join(served[:10])} but not {self._model!r}; "
                "set REPLAN_PLANNER_MODEL to the served model name",
            )
        return BackendState(True, "ready", checks={"upstream": self.settings.base_url, "model": self._model})

    async def generate(self, request: GenerationInput) -> Generation:
        image_url = await asyncio.to_thread(self._data_uri, request.image, request.view)
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [openai_user_message(image_url, request.prompt)],
            "max_tokens": request.max_new_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.seed is not None:
            body["seed"] = request.seed
        if self.settings.send_mm_processor_kwargs:
            body["mm_processor_kwargs"] = dict(self._pixels)
        body.update(structured_output_extras(self.settings.structured_output, self._grammars[request.mode]))
        data = await self._post("chat/completions", body)
        return self._generation(data, request.view)

    # -- internals ------------------------------------------------------------------------------------------

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise RuntimeError("OpenAIChatBackend.start() was not called")
        return self._client

    def _data_uri(self, image: Image.Image, view: Size) -> str:
        """The image resized to the model's view (the server's processor then leaves it as is), encoded."""
        if image.size != (view.width, view.height):
            image = image.resize((view.width, view.height), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        if self.settings.image_format == "jpeg":
            image.save(buffer, format="JPEG", quality=95)
            mime = "image/jpeg"
        else:
            image.save(buffer, format="PNG")
            mime = "image/png"
        return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        client = self._require_client()
        headers = {REQUEST_ID_HEADER: rid} if (rid := get_request_id()) else {}
        last: ReplanError = UpstreamError("the planner upstream was not called", code="planner_upstream_error")
        for attempt in range(self._retry.attempts):
            wait_s: float | None = None
            try:
                response = await client.post(path, json=body, headers=headers)
            except httpx.ConnectTimeout as exc:
                kind, last = UpstreamErrorKind.CONNECTION, self._unavailable(exc)
            except httpx.TimeoutException:
                kind, last = UpstreamErrorKind.TIMEOUT, self._timeout()
            except httpx.TransportError as exc:
                kind, last = UpstreamErrorKind.CONNECTION, self._unavailable(exc)
            else:
                if response.is_success:
                    return self._json(response)
                kind, last, retryable = self._http_error(response)
                if not retryable:
                    self._count(kind)
                    raise last
                wait_s = last.retry_after_s
            self._count(kind)
            if attempt + 1 < self._retry.attempts:
                delay = self._retry.delay(attempt)
                if wait_s is not None:
                    delay = min(max(delay, wait_s), self._retry.backoff_max_s)
                logger.warning(
                    "planner upstream attempt %d/%d failed (%s); retrying in %.2f s",
                    attempt + 1,
                    self._retry.attempts,
                    kind,
                    delay,
                )
                await self._sleep(delay)
        raise last

    def _count(self, kind: str) -> None:
        if self._metrics is not None:
            self._metrics.observe_upstream_error(kind)

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"the planner model server at {self.settings.base_url} is unreachable ({type(exc).__name__}) after "
            f"{self._retry.attempts} attempts; check that vLLM is running and REPLAN_PLANNER_OPENAI__BASE_URL",
            code="planner_upstream_unavailable",
            retry_after_s=5,
        )

    def _timeout(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"the planner model server at {self.settings.base_url} did not answer within "
            f"{self.settings.timeout_s:g} s ({self._retry.attempts} attempts); raise "
            "REPLAN_PLANNER_OPENAI__TIMEOUT_S or lower options.max_new_tokens",
            code="planner_upstream_timeout",
        )

    def _http_error(self, response: httpx.Response) -> tuple[str, ReplanError, bool]:
        status, said = response.status_code, _upstream_message(response)
        if status == 429:
            retry_after = _retry_after(response)
            error: ReplanError = ServiceUnavailable(
                f"the planner model server is overloaded (HTTP 429: {said})",
                code="planner_upstream_overloaded",
                retry_after_s=retry_after if retry_after is not None else 5,
            )
            return UpstreamErrorKind.HTTP_429, error, True
        if status >= 500:
            error = UpstreamError(
                f"the planner model server failed with HTTP {status} after {self._retry.attempts} attempts: {said}",
                code="planner_upstream_error",
            )
            return UpstreamErrorKind.HTTP_5XX, error, True
        error = UpstreamError(
            f"the planner model server refused the request with HTTP {status}: {said}. "
            "Check REPLAN_PLANNER_MODEL and REPLAN_PLANNER_OPENAI__STRUCTURED_OUTPUT (set it to 'off' for "
            "servers without structured outputs)",
            code="planner_upstream_rejected",
        )
        return UpstreamErrorKind.HTTP_4XX, error, False

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self._count(UpstreamErrorKind.BAD_RESPONSE)
            raise UpstreamError(
                f"the planner model server answered HTTP {response.status_code} with something that is not a "
                f"JSON object: {response.text[:_MESSAGE_CHARS]!r}",
                code="planner_upstream_bad_response",
            )
        return data

    def _generation(self, data: dict[str, Any], view: Size) -> Generation:
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError):
            text, choice = None, {}
        if not isinstance(text, str):
            self._count(UpstreamErrorKind.BAD_RESPONSE)
            raise UpstreamError(
                "the planner model server's answer has no choices[0].message.content text: "
                f"{str(data)[:_MESSAGE_CHARS]!r}",
                code="planner_upstream_bad_response",
            )
        usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        return Generation(
            text=text,
            model=str(data.get("model") or self._model),
            view=view,
            prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
            completion_tokens=_int_or_none(usage.get("completion_tokens")),
            finish_reason=choice.get("finish_reason") if isinstance(choice, dict) else None,
        )


def _upstream_message(response: httpx.Response) -> str:
    """The upstream's own error message: OpenAI/vLLM `{"error": {"message"}}`, older vLLM `{"message"}`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("error", body)
        if isinstance(detail, dict) and isinstance(detail.get("message"), str):
            return detail["message"][:_MESSAGE_CHARS]
        if isinstance(detail, str):
            return detail[:_MESSAGE_CHARS]
    return response.text[:_MESSAGE_CHARS] or "(empty body)"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
