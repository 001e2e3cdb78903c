"""How the worker reaches editor services: the `EditorClient` protocol, its HTTP implementation, a pool.

GPU work stays in the editor services; the worker only POSTs `EditRequest` JSON to
``{editor_url}/v1/edit`` and reads an `EditResponse`. `HttpEditorClient` rides on `replan_common`'s
blocking `ServiceClient`, so an editor's error envelope (e.g. a 422 ``invalid_plan`` naming the bad
region) arrives here as the same typed error. `EditorPool` spreads concurrent edits over several editor
workers (one per GPU), always choosing the one with the fewest edits in flight; `FailoverEditor` gives
each benchmark shard its own editor and falls over to the next while that one is down.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import httpx
from pydantic import SecretStr

from replan_common.errors import ReplanError, ServiceUnavailable, UpstreamTimeout
from replan_common.http.client import RetryPolicy, ServiceClient
from replan_common.protocol import EditRequest, EditResponse

__all__ = ["EditorClient", "EditorPool", "FailoverEditor", "HttpEditorClient"]


class EditorClient(Protocol):
    """Anything that performs one edit. Raises a `ReplanError` when the edit cannot be done."""

    def edit(self, request: EditRequest) -> EditResponse: ...


class HttpEditorClient:
    """One editor service at ``base_url`` (``http://host:port``, without ``/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: SecretStr | None = None,
        timeout_s: float = 600.0,
        retry: RetryPolicy = RetryPolicy(attempts=3, backoff_s=5.0, backoff_max_s=30.0),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"editor URL must start with http:// or https://, got {base_url!r}")
        headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"} if api_key else None
        self.base_url = base_url.rstrip("/")
        self._client = ServiceClient(
            self.base_url, service="editor", timeout_s=timeout_s, retry=retry, headers=headers, transport=transport
        )

    def edit(self, request: EditRequest) -> EditResponse:
        # Same image, plan, settings and seed give the same result, so a retried edit is safe.
        return self._client.post_model("/v1/edit", request, EditResponse)

    def close(self) -> None:
        self._client.close()


class EditorPool:
    """Least-busy dispatch over several editors; itself an `EditorClient`. Thread-safe."""

    def __init__(self, editors: Sequence[EditorClient]) -> None:
        if not editors:
            raise ValueError("an editor pool needs at least one editor")
        self._editors = list(editors)
        self._in_flight = [0] * len(self._editors)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._editors)

    def edit(self, request: EditRequest) -> EditResponse:
        with self._lock:
            index = min(range(len(self._editors)), key=self._in_flight.__getitem__)
            self._in_flight[index] += 1
        try:
            return self._editors[index].edit(request)
        finally:
            with self._lock:
                self._in_flight[index] -= 1


class FailoverEditor:
    """Tries editors in order, moving on only when one is down or too slow; itself an `EditorClient`.

    Used to shard work: shard ``k`` of ``n`` gets the editors rotated by ``k``, so each editor owns an
    equal share while it is up and its share spreads over the others when it is not.
    """

    def __init__(self, editors: Sequence[EditorClient]) -> None:
        if not editors:
            raise ValueError("a failover editor needs at least one editor")
        self._editors = list(editors)

    @classmethod
    def for_shard(cls, editors: Sequence[EditorClient], shard: int) -> FailoverEditor:
        start = shard % len(editors)
        return cls([*editors[start:], *editors[:start]])

    def edit(self, request: EditRequest) -> EditResponse:
        last: ReplanError | None = None
        for editor in self._editors:
            try:
                return editor.edit(request)
            except (ServiceUnavailable, UpstreamTimeout) as exc:
                # Both mean "this editor cannot take it now"; a 4xx is the request's fault and is not retried.
                last = exc
        assert last is not None
        raise last
