"""How the worker reaches the planner service: POST `PlanRequest` JSON to ``{planner_url}/v1/plan``.

Rides on `replan_common`'s blocking `ServiceClient`, so the planner's error envelope (e.g. a 422
``invalid_plan`` when the model's output cannot be read) arrives as the same typed error.
"""

from __future__ import annotations

from typing import Protocol

import httpx
from pydantic import SecretStr

from replan_common.http.client import RetryPolicy, ServiceClient
from replan_common.protocol import PlanRequest, PlanResponse

__all__ = ["HttpPlannerClient", "PlannerClient"]


class PlannerClient(Protocol):
    def plan(self, request: PlanRequest) -> PlanResponse: ...


class HttpPlannerClient:
    """One planner service at ``base_url`` (``http://host:port``, without ``/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: SecretStr | None = None,
        timeout_s: float = 300.0,
        retry: RetryPolicy = RetryPolicy(attempts=3, backoff_s=2.0, backoff_max_s=30.0),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"planner URL must start with http:// or https://, got {base_url!r}")
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else None
        self.base_url = base_url.rstrip("/")
        self._client = ServiceClient(
            self.base_url, service="planner", timeout_s=timeout_s, retry=retry, headers=headers, transport=transport
        )

    def plan(self, request: PlanRequest) -> PlanResponse:
        return self._client.post_model("/v1/plan", request, PlanResponse)

    def close(self) -> None:
        self._client.close()
