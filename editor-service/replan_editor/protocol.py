"""The editor's own wire models and names, beside the shared ones in `replan_common.protocol`.

`EditRequest`/`EditResponse`, `ProgressEvent` and the original reward route's models are shared (the
gateway speaks them too) and imported from `replan_common.protocol`; this module adds only what is
editor-specific: `/v1/info`, the media types `/v1/edit` answers with, the SSE event names, the job-id
header and the Redis channel of progress events.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field

from replan_common.protocol import Backbone, EditSettings

#: Header carrying the gateway's job id; progress events use it (else the request id).
JOB_ID_HEADER = "X-Replan-Job-Id"

#: Redis pub/sub channel of one job's progress events (when `REPLAN_EDITOR_REDIS_URL` is set).
PROGRESS_CHANNEL_PREFIX = "replan:progress:"


def progress_channel(job_id: str) -> str:
    return f"{PROGRESS_CHANNEL_PREFIX}{job_id}"


class ResponseFormat(str, Enum):
    """What `POST /v1/edit` answers with, chosen by the `Accept` header."""

    JSON = "application/json"
    PNG = "image/png"
    EVENT_STREAM = "text/event-stream"


class EditStreamEvent(str, Enum):
    """SSE event names of `POST /v1/edit` with `Accept: text/event-stream`.

    Zero or more `progress` (data: `ProgressEvent`), then exactly one `result` (data: `EditResponse`) or
    one `error` (data: the error envelope plus `"status"`, the HTTP status the error would have had).
    """

    PROGRESS = "progress"
    RESULT = "result"
    ERROR = "error"


class EditorInfo(BaseModel):
    """`GET /v1/info`: what this worker serves and how."""

    service: str = "editor"
    version: str
    status: str = Field(description="loading, ready, failed or stopped.")
    failure: str | None = Field(default=None, description="Why loading failed, when it did.")
    backbone: Backbone
    model: str = Field(description="Checkpoint path or hub id; tiny-<backbone> for the tiny preset.")
    preset: str
    device: str
    dtype: str
    compile: bool
    kernels: list[str] = Field(description="Region-attention kernels available on this device.")
    defaults: EditSettings | None = Field(
        default=None, description="Every setting an empty request resolves to; null until the model is loaded."
    )
    max_queue: int
    queue_depth: int
    load_seconds: float | None = Field(default=None, description="Loading plus warm-up, once ready.")
    warmup_seconds: float | None = Field(default=None, description="The warm-up edit; null when none ran.")
