"""Retrying JSON POSTs for the worker's outbound HTTP calls (judges and editor services).

One policy for every remote call the worker makes: exponential backoff on connection errors, timeouts,
5xx and 429 (honouring ``Retry-After``), and no retry on any other 4xx, which will not get better by
asking again. Failures surface as `replan_common.errors` types so a caller can tell "the upstream said
no" (`UpstreamError` with the upstream's status in the message) from "the upstream is down or slow"
(`ServiceUnavailable`, `UpstreamTimeout`). This module owns no client: callers pass their own
`httpx.Client`, which is how tests inject an `httpx.MockTransport`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from replan_common.errors import ReplanError, ServiceUnavailable, UpstreamError, UpstreamTimeout

logger = logging.getLogger(__name__)

__all__ = ["RetryPolicy", "post_json"]

_BODY_EXCERPT_CHARS = 300


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient failure."""

    max_attempts: int = 3
    initial_delay_s: float = 1.0
    multiplier: float = 2.0
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.initial_delay_s < 0 or self.max_delay_s < 0 or self.multiplier < 1:
            raise ValueError("delays must be >= 0 and the multiplier >= 1")

    def delay_s(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Wait before attempt ``attempt + 1`` (attempts count from 0); at least the server's Retry-After."""
        backoff = self.initial_delay_s * self.multiplier**attempt
        if retry_after_s is not None:
            backoff = max(backoff, retry_after_s)
        return min(backoff, self.max_delay_s)


def is_retryable_status(status: int) -> bool:
    return status >= 500 or status == 429


def _retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:  # an HTTP date: rare from APIs; fall back to our own backoff
        return None


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:_BODY_EXCERPT_CHARS] + ("…" if len(text) > _BODY_EXCERPT_CHARS else "")


def post_json(
    client: httpx.Client,
    url: str,
    body: Mapping[str, object],
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    policy: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> object:
    """POST ``body`` as JSON and return the decoded JSON reply, retrying transient failures.

    Args:
        what: names the upstream in errors and logs, e.g. ``"judge gpt-4o"`` or ``"editor http://e1:8000"``.

    Raises:
        UpstreamError: a non-retryable status (any 4xx but 429), a reply that is not JSON, or 5xx/429 on
            every attempt.
        UpstreamTimeout: the last attempt timed out.
        ServiceUnavailable: the last attempt could not connect.
    """
    last_error: ReplanError | None = None
    for attempt in range(policy.max_attempts):
        retry_after: float | None = None
        try:
            response = client.post(url, json=dict(body), headers=dict(headers or {}))
        except httpx.TimeoutException as exc:
            last_error = UpstreamTimeout(f"{what} timed out: {exc!s}", code="upstream_timeout")
        except httpx.TransportError as exc:
            last_error = ServiceUnavailable(
                f"{what} could not be reached: {type(exc).__name__}: {exc!s}", code="upstream_unreachable"
            )
        else:
            if response.is_success:
                try:
                    return response.json()
                except ValueError as exc:
                    raise UpstreamError(
                        f"{what} answered HTTP {response.status_code} with a body that is not JSON: "
                        f"{_excerpt(response)!r}",
                        code="upstream_bad_reply",
                    ) from exc
            message = f"{what} answered HTTP {response.status_code}: {_excerpt(response)}"
            if not is_retryable_status(response.status_code):
                raise UpstreamError(message, code="upstream_rejected")
            retry_after = _retry_after_s(response)
            last_error = UpstreamError(message, code="upstream_error", retry_after_s=retry_after)
        if attempt + 1 < policy.max_attempts:
            delay = policy.delay_s(attempt, retry_after)
            logger.warning(
                "%s failed (attempt %s/%s): %s; retrying in %.1fs",
                what,
                attempt + 1,
                policy.max_attempts,
                last_error.message,
                delay,
            )
            sleep(delay)
    assert last_error is not None  # the loop ran at least once and only falls through on an error
    logger.error("%s failed after %s attempts: %s", what, policy.max_attempts, last_error.message)
    raise last_error
