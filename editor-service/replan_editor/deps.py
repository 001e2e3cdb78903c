"""FastAPI dependencies of the editor's routes: the service object, the job id, the response format.

Everything a route needs comes from `app.state.services` (built once by `create_app`) through these
`Annotated` aliases, so routes never build or look up collaborators themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

from fastapi import Depends, Header, Request

from replan_common.context import get_request_id, new_request_id
from replan_common.errors import ReplanError
from replan_common.metrics import ServiceMetrics
from replan_editor.metrics import EditorMetrics
from replan_editor.protocol import JOB_ID_HEADER, ResponseFormat
from replan_editor.serving import EditService
from replan_editor.settings import EditorSettings
from replan_editor.worker import EditorWorker


@dataclass(frozen=True)
class EditorServices:
    """Everything the editor's routes use, built once per app."""

    settings: EditorSettings
    worker: EditorWorker
    edits: EditService
    metrics: ServiceMetrics
    editor_metrics: EditorMetrics


class NotAcceptable(ReplanError):
    status: ClassVar[int] = 406
    type: ClassVar[str] = "invalid_request_error"
    default_code: ClassVar[str] = "not_acceptable"


def get_services(request: Request) -> EditorServices:
    services: EditorServices = request.app.state.services
    return services


def get_edit_service(request: Request) -> EditService:
    return get_services(request).edits


def get_job_id(
    x_replan_job_id: Annotated[str | None, Header(alias=JOB_ID_HEADER, max_length=128)] = None,
) -> str:
    """The gateway's job id, else this request's id: progress events carry it."""
    if x_replan_job_id and x_replan_job_id.strip():
        return x_replan_job_id.strip()
    return get_request_id() or new_request_id()


def negotiate(accept: str | None) -> ResponseFormat:
    """Pick JSON, PNG or SSE from an `Accept` header (q-values honoured; none or */* means JSON)."""
    if not accept or not accept.strip():
        return ResponseFormat.JSON
    ranges: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranges.append((-q, position, media.lower()))
    for _, _, media in sorted(ranges):
        if media in ("application/json", "application/*", "*/*"):
            return ResponseFormat.JSON
        if media in ("image/png", "image/*"):
            return ResponseFormat.PNG
        if media == "text/event-stream":
            return ResponseFormat.EVENT_STREAM
    raise NotAcceptable(
        f"cannot answer with {accept!r}; accept one of application/json, image/png or text/event-stream",
        param="Accept",
    )


def get_response_format(accept: Annotated[str | None, Header()] = None) -> ResponseFormat:
    return negotiate(accept)


ServicesDep = Annotated[EditorServices, Depends(get_services)]
EditServiceDep = Annotated[EditService, Depends(get_edit_service)]
JobIdDep = Annotated[str, Depends(get_job_id)]
ResponseFormatDep = Annotated[ResponseFormat, Depends(get_response_format)]
