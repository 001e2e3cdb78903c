"""`/v1/jobs`: create an async replan or edit, read it, cancel it, and follow its events over SSE."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from replan_common.errors import ErrorEnvelope
from replan_gateway.deps import CallerDep, JobServiceDep, WorkCallerDep
from replan_gateway.protocol import JobCreate, JobPublic

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

ERRORS: dict[int | str, dict[str, object]] = {status: {"model": ErrorEnvelope} for status in (400, 401, 404, 429)}


@router.post(
    "", status_code=202, response_model=JobPublic, responses=ERRORS, summary="Queue a replan or edit; returns its id"
)
async def create_job(body: JobCreate, jobs: JobServiceDep, caller: WorkCallerDep) -> JobPublic:
    return JobPublic.from_record(await jobs.create(body, caller))


@router.get("/{job_id}", response_model=JobPublic, responses=ERRORS, summary="A job: status, plan, result or error")
async def get_job(job_id: str, jobs: JobServiceDep, caller: CallerDep) -> JobPublic:
    return JobPublic.from_record(await jobs.get(job_id, caller))


@router.delete(
    "/{job_id}",
    response_model=JobPublic,
    responses={**ERRORS, 409: {"model": ErrorEnvelope}},
    summary="Cancel a job that has not finished",
)
async def cancel_job(job_id: str, jobs: JobServiceDep, caller: CallerDep) -> JobPublic:
    return JobPublic.from_record(await jobs.cancel(job_id, caller))


@router.get(
    "/{job_id}/events",
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "Job events (SSE)."},
        **ERRORS,
    },
    summary="Job events (SSE): queued, planning, editing, step i/N, then done, error or cancelled",
    description="Replays the job's log from the start (or after `Last-Event-ID` / `?after=`), then follows it "
    "live; ends after the final event. Each event's `id` is its position in the log.",
)
async def job_events(
    job_id: str,
    jobs: JobServiceDep,
    caller: CallerDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
    after: Annotated[str | None, Query(max_length=64, description="Same as Last-Event-ID.")] = None,
) -> StreamingResponse:
    stream = await jobs.events(job_id, caller, last_event_id=last_event_id or after)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)
