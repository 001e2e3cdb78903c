"""The planner and editor over HTTP, as the job runner calls them from a worker process (blocking).

Planning is a plain JSON call. Editing streams the editor's `POST /v1/edit` with
`Accept: text/event-stream` and `X-Replan-Job-Id`, relaying `progress` events to the runner as they come
and returning the `result` event (or raising the typed error of the `error` event). Several URLs per
service are tried in random order: the next one is tried when one is unreachable, has a full queue, or
serves another backbone than the edit asks for (so a mixed pool of Kontext and Qwen editors works);
balancing proper is the gateway's job.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import httpx

from replan_common.context import REQUEST_ID_HEADER, get_request_id
from replan_common.errors import (
    ReplanError,
    ServiceUnavailable,
    UpstreamError,
    UpstreamTimeout,
    error_from_envelope,
)
from replan_common.jobs.runner import ProgressCallback
from replan_common.jobs.sse import parse_sse
from replan_common.protocol import EditRequest, EditResponse, PlanRequest, PlanResponse, ProgressEvent

JOB_ID_HEADER = "X-Replan-Job-Id"

T = TypeVar("T")

#: Answers after which another worker may well succeed: busy, or serving another backbone.
_TRY_ANOTHER = frozenset({"queue_full", "backbone_mismatch"})


class HttpJobUpstreams:
    """`JobUpstreams` over HTTP; tests inject an httpx transport."""

    def __init__(
        self,
        *,
        planner_urls: Sequence[str],
        editor_urls: Sequence[str],
        plan_timeout_s: float = 300.0,
        edit_timeout_s: float = 900.0,
        api_key: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not planner_urls or not editor_urls:
            raise ValueError("the job runner needs at least one planner URL and one editor URL")
        self.planner_urls = [u.rstrip("/") for u in planner_urls]
        self.editor_urls = [u.rstrip("/") for u in editor_urls]
        self.plan_timeout_s = plan_timeout_s
        self.edit_timeout_s = edit_timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            transport=transport, timeout=httpx.Timeout(30.0, read=edit_timeout_s), headers=headers
        )

    def plan(self, request: PlanRequest, *, job_id: str) -> PlanResponse:
        def call(base: str) -> PlanResponse:
            response = self._client.post(
                f"{base}/v1/plan",
                content=request.model_dump_json(),
                headers=_headers(job_id, "application/json"),
                timeout=self.plan_timeout_s,
            )
            if not response.is_success:
                raise _error_for(response.status_code, response.content, response.headers)
            return PlanResponse.model_validate_json(response.content)

        return _first_reachable("planner", self.planner_urls, call, self.plan_timeout_s)

    def edit(self, request: EditRequest, *, job_id: str, on_progress: ProgressCallback) -> EditResponse:
        def call(base: str) -> EditResponse:
            with self._stream(base, request, job_id) as lines:
                for message in parse_sse(lines):
                    if message.event == "progress":
                        on_progress(ProgressEvent.model_validate_json(message.data))
                    elif message.event == "result":
                        return EditResponse.model_validate_json(message.data)
                    elif message.event == "error":
                        body = json.loads(message.data)
                        retry_after = body.get("retry_after_s")
                        raise error_from_envelope(int(body.get("status", 500)), body, retry_after_s=retry_after)
            raise UpstreamError("the editor's event stream ended without a result", code="editor_stream_ended")

        return _first_reachable("editor", self.editor_urls, call, self.edit_timeout_s)

    @contextmanager
    def _stream(self, base: str, request: EditRequest, job_id: str) -> Iterator[Iterator[str]]:
        with self._client.stream(
            "POST",
            f"{base}/v1/edit",
            content=request.model_dump_json(),
            headers={**_headers(job_id, "text/event-stream"), "Content-Type": "application/json"},
        ) as response:
            if not response.is_success:
                raise _error_for(response.status_code, response.read(), response.headers)
            yield response.iter_lines()

    def close(self) -> None:
        self._client.close()


def _headers(job_id: str, accept: str) -> dict[str, str]:
    headers = {"Accept": accept, JOB_ID_HEADER: job_id, "Content-Type": "application/json"}
    request_id = get_request_id()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def _error_for(status: int, content: bytes, headers: httpx.Headers) -> ReplanError:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    retry_after = headers.get("Retry-After")
    return error_from_envelope(status, body, retry_after_s=float(retry_after) if retry_after else None)


def _first_reachable(service: str, urls: Sequence[str], call: Callable[[str], T], timeout_s: float) -> T:
    """Call the URLs in random order until one answers; unreachable, busy or wrong-backbone ones pass it on."""
    order = list(urls)
    random.shuffle(order)
    failures: list[str] = []
    passed_on: ReplanError | None = None
    for base in order:
        try:
            return call(base)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"{service} at {base} did not answer within {timeout_s:.0f} s", code=f"{service}_timeout"
            ) from exc
        except httpx.TransportError as exc:
            failures.append(f"{base} ({type(exc).__name__})")
        except ReplanError as exc:
            if exc.code not in _TRY_ANOTHER:
                raise
            failures.append(f"{base} ({exc.code})")
            passed_on = exc
    if passed_on is not None:
        passed_on.message = f"{passed_on.message} (tried: {', '.join(failures)})"
        raise passed_on
    raise ServiceUnavailable(
        f"no {service} is reachable: {', '.join(failures)}", code=f"{service}_unavailable", retry_after_s=5
    )
