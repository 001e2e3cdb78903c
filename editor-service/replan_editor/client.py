"""A blocking client of `POST /v1/edit` as an event stream, for `replan edit --url` (editor or gateway).

It sends an `EditRequest` with ``Accept: text/event-stream``, calls `on_progress` for every `progress` event
and returns the `EditResponse` of the `result` event, or raises the typed error of the `error` event (or of
the HTTP answer when the edit was refused before the stream started: 4xx, 429 queue_full, 503 loading).
The gateway's job runner has its own consumer of the same stream (`replan_common.jobs.upstream`); the SSE
framing is shared (`replan_common.jobs.sse`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from replan_common.context import REQUEST_ID_HEADER, get_request_id
from replan_common.errors import ReplanError, ServiceUnavailable, UpstreamError, UpstreamTimeout, error_from_envelope
from replan_common.jobs.sse import SseMessage, parse_sse
from replan_common.protocol import EditRequest, EditResponse, ProgressEvent
from replan_editor.protocol import JOB_ID_HEADER, EditStreamEvent, ResponseFormat

ProgressCallback = Callable[[ProgressEvent], None]


class _StreamReader:
    """Folds SSE messages of one edit into progress callbacks and a final result or error."""

    def __init__(self, on_progress: ProgressCallback | None) -> None:
        self.on_progress = on_progress
        self.result: EditResponse | None = None
        self.error: ReplanError | None = None

    def feed(self, message: SseMessage) -> None:
        if message.event == EditStreamEvent.PROGRESS.value:
            if self.on_progress is not None:
                self.on_progress(ProgressEvent.model_validate_json(message.data))
        elif message.event == EditStreamEvent.RESULT.value:
            self.result = EditResponse.model_validate_json(message.data)
        elif message.event == EditStreamEvent.ERROR.value:
            body: Any = json.loads(message.data)
            status = int(body.get("status", 500)) if isinstance(body, dict) else 500
            retry = body.get("retry_after_s") if isinstance(body, dict) else None
            self.error = error_from_envelope(status, body, retry_after_s=retry)

    def outcome(self, url: str) -> EditResponse:
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise UpstreamError(
                f"the editor at {url} closed the event stream without a result", code="stream_truncated"
            )
        return self.result


def _headers(job_id: str | None) -> dict[str, str]:
    headers = {"Accept": ResponseFormat.EVENT_STREAM.value}
    if job_id:
        headers[JOB_ID_HEADER] = job_id
    request_id = get_request_id()
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return headers


def _refused(response_status: int, body: bytes, retry_after: str | None) -> ReplanError:
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = None
    try:
        retry = float(retry_after) if retry_after else None
    except ValueError:
        retry = None
    return error_from_envelope(response_status, parsed, retry_after_s=retry)


class EditorStreamClient:
    """Blocking client of one editor (or the gateway's `/v1/edit`), streaming progress."""

    def __init__(
        self, base_url: str, *, timeout_s: float = 600.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=10.0), transport=transport
        )

    def edit(
        self, request: EditRequest, *, on_progress: ProgressCallback | None = None, job_id: str | None = None
    ) -> EditResponse:
        reader = _StreamReader(on_progress)
        try:
            with self._client.stream(
                "POST", "/v1/edit", json=request.model_dump(mode="json", exclude_none=True), headers=_headers(job_id)
            ) as response:
                if response.status_code != 200:
                    raise _refused(response.status_code, response.read(), response.headers.get("Retry-After"))
                for message in parse_sse(response.iter_lines()):
                    reader.feed(message)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(
                f"the editor at {self.base_url} did not answer in time", code="editor_timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"the editor at {self.base_url} is unreachable ({type(exc).__name__}); check that it is running",
                code="editor_unavailable",
            ) from exc
        return reader.outcome(self.base_url)

    def close(self) -> None:
        self._client.close()
