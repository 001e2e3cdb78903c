"""HTTP clients for calling another replan-suite service (or any JSON API speaking our error envelope).

They forward the current request id, retry connection errors and 5xx answers with exponential backoff
(only where the caller says the call is safe to repeat), and turn every failure into a typed
`ReplanError`: the upstream's own envelope when it sent one (so its code reaches the user unchanged),
`ServiceUnavailable` when nothing answers, `UpstreamTimeout` on timeouts. Tests inject an httpx transport.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from replan_common.context import REQUEST_ID_HEADER, get_request_id
from replan_common.errors import (
    ReplanError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
    error_from_envelope,
)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a call that is safe to repeat."""

    attempts: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_s * (2**attempt)))


NO_RETRY = RetryPolicy(attempts=1)

ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_reply(response: httpx.Response, model: type[ModelT], *, service: str, path: str) -> ModelT:
    """The 2xx body as `model`; a body that is not one is the upstream's fault (502 `<service>_bad_reply`)."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise UpstreamError(
            f"{service} at {response.request.url.host} answered {path} with a body that is not a "
            f"{model.__name__}: {exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}",
            code=f"{service}_bad_reply",
        ) from exc


def _headers(extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = dict(extra or {})
    request_id = get_request_id()
    if request_id and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _error_for(response: httpx.Response, service: str) -> ReplanError:
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    error = error_from_envelope(response.status_code, body, retry_after_s=_retry_after(response))
    if body is None or not isinstance(body, dict) or "error" not in body:
        error.message = f"{service} answered HTTP {response.status_code} without an error envelope"
    return error


def _is_retryable(status: int) -> bool:
    return status >= 500 and status != 501


def _unavailable(service: str, url: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"{service} at {url} is unreachable ({type(exc).__name__}); check that it is running",
        code=f"{service}_unavailable",
        retry_after_s=5,
    )


def _timeout(service: str, url: str) -> UpstreamTimeout:
    return UpstreamTimeout(f"{service} at {url} did not answer in time", code=f"{service}_timeout")


class AsyncServiceClient:
    """Async JSON client for one upstream service."""

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        timeout_s: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.retry = retry
        self._client = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout_s, headers=dict(headers or {}), transport=transport
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool = True,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send; return the 2xx response or raise the typed error. Retries only when `idempotent`."""
        attempts = self.retry.attempts if idempotent else 1
        last: ReplanError = UpstreamError(f"{self.service} call did not run")
        for attempt in range(attempts):
            try:
                response = await self._client.request(
                    method,
                    path,
                    json=json,
                    headers=_headers(headers),
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TimeoutException:
                last = _timeout(self.service, self.base_url)
            except httpx.TransportError as exc:
                last = _unavailable(self.service, self.base_url, exc)
            else:
                if response.is_success:
                    return response
                last = _error_for(response, self.service)
                if not _is_retryable(response.status_code):
                    raise last
            if attempt + 1 < attempts:
                await asyncio.sleep(self.retry.delay(attempt))
        raise last

    async def aclose(self) -> None:
        await self._client.aclose()


class ServiceClient:
    """Blocking twin of `AsyncServiceClient`, for Celery tasks and the CLI."""

    def __init__(
        self,
        base_url: str,
        *,
        service: str,
        timeout_s: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.retry = retry
        self._client = httpx.Client(
            base_url=self.base_url, timeout=timeout_s, headers=dict(headers or {}), transport=transport
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        idempotent: bool = True,
        timeout_s: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        attempts = self.retry.attempts if idempotent else 1
        last: ReplanError = UpstreamError(f"{self.service} call did not run")
        for attempt in range(attempts):
            try:
                response = self._client.request(
                    method,
                    path,
                    json=json,
                    headers=_headers(headers),
                    timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TimeoutException:
                last = _timeout(self.service, self.base_url)
            except httpx.TransportError as exc:
                last = _unavailable(self.service, self.base_url, exc)
            else:
                if response.is_success:
                    return response
                last = _error_for(response, self.service)
                if not _is_retryable(response.status_code):
                    raise last
            if attempt + 1 < attempts:
                time.sleep(self.retry.delay(attempt))
        raise last

    def post_model(self, path: str, body: BaseModel, reply: type[ModelT], *, idempotent: bool = True) -> ModelT:
        """POST a pydantic body (None fields left out) and read the reply as `reply`."""
        response = self.request(
            "POST", path, json=body.model_dump(mode="json", exclude_none=True), idempotent=idempotent
        )
        return parse_reply(response, reply, service=self.service, path=path)

    def close(self) -> None:
        self._client.close()
