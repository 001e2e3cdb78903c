"""`POST /v1/edit`: one region-guided edit, answered as JSON, PNG bytes or an SSE progress stream."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from replan_common.errors import ErrorEnvelope
from replan_common.protocol import EditRequest, EditResponse
from replan_editor.deps import EditServiceDep, JobIdDep, ResponseFormatDep
from replan_editor.protocol import JOB_ID_HEADER, ResponseFormat
from replan_editor.sse import EventStreamResponse, run_until_disconnected

router = APIRouter(prefix="/v1", tags=["edit"])

_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorEnvelope} for status in (400, 406, 413, 422, 429, 500, 503)
}


@router.post(
    "/edit",
    response_model=EditResponse,
    summary="Edit an image with a region plan (or raw planner text, or an instruction alone)",
    responses={
        200: {
            "content": {
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
            "description": "JSON by default; `Accept: image/png` for the bytes (timings in Server-Timing); "
            "`Accept: text/event-stream` for `progress` events then one `result` or `error` event.",
        },
        **_ERRORS,
    },
)
async def edit(
    body: EditRequest, request: Request, service: EditServiceDep, fmt: ResponseFormatDep, job_id: JobIdDep
) -> Response | EditResponse:
    job = await service.prepare(body, job_id=job_id)
    if fmt is ResponseFormat.EVENT_STREAM:
        stream = service.open_stream(job)
        return EventStreamResponse(stream.events(), on_close=stream.close, headers={JOB_ID_HEADER: job_id})
    output = await run_until_disconnected(request.receive, lambda: service.edit(job))
    if fmt is ResponseFormat.PNG:
        png, timings = await service.to_png(output)
        headers = {"Server-Timing": server_timing(timings), JOB_ID_HEADER: job_id}
        return Response(png, media_type=ResponseFormat.PNG.value, headers=headers)
    return await service.to_response(output)


def server_timing(timings_ms: dict[str, float]) -> str:
    """`Server-Timing` value: `decode;dur=1.2, queue;dur=0.1, ...` (names without the `_ms` suffix)."""
    return ", ".join(f"{name.removesuffix('_ms')};dur={ms:.1f}" for name, ms in timings_ms.items())
