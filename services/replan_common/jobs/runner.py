"""Run one async job to the end: plan (replan jobs), edit, store the result, logging events as it goes.

`run_job` is idempotent, so a queue may deliver a job more than once (a worker killed mid-job, a visibility
timeout): a finished job is left alone, a plan already stored is not made again, and only one run can
ever enter `done` (the store's compare-and-set). A client's cancel shows up as the store refusing the
next progress event, which stops the edit. Queues and HTTP are not here: the Celery task (or any other
executor) calls `run_job` with a store and the upstream callers.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from replan_common.errors import QueueFull, ReplanError, ServiceUnavailable
from replan_common.jobs.models import ACTIVE, JobKind, JobRecord, JobStatus
from replan_common.jobs.store import InvalidTransition, JobChange, JobStore
from replan_common.protocol import EditRequest, EditResponse, PlanRequest, PlanResponse, ProgressEvent, ProgressStage

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[ProgressEvent], None]


class JobUpstreams(Protocol):
    """The planner and editor as the runner needs them."""

    def plan(self, request: PlanRequest, *, job_id: str) -> PlanResponse: ...

    def edit(self, request: EditRequest, *, job_id: str, on_progress: ProgressCallback) -> EditResponse: ...


def is_transient(error: ReplanError) -> bool:
    """Errors worth waiting out (an upstream down, out of GPU memory, its queue full), not the request's fault."""
    return isinstance(error, (ServiceUnavailable, QueueFull))


def run_job(job_id: str, *, store: JobStore, upstreams: JobUpstreams, final_attempt: bool = True) -> JobRecord | None:
    """Bring the job to a terminal state; returns it as stored afterwards (None if it no longer exists).

    A transient upstream error fails the job only on the `final_attempt`; otherwise it is logged as an
    event and re-raised so the caller can retry later with the job still active.
    """
    record = store.get(job_id)
    if record is None:
        logger.warning("job %s is not in the store (expired or never created); nothing to run", job_id)
        return None
    if record.status.is_terminal:
        logger.info("job %s is already %s; not running it again", job_id, record.status.value)
        return record
    try:
        attempt = store.start_attempt(job_id)
        logger.info("job %s: attempt %d, status %s", job_id, attempt, record.status.value)
        plan = record.plan.plan if record.plan is not None else None
        if record.kind is JobKind.REPLAN and plan is None:
            store.transition(job_id, JobStatus.PLANNING, message="planning")
            planned = upstreams.plan(record.spec.to_plan_request(), job_id=job_id)
            store.save_plan(job_id, planned)
            plan = planned.plan
        else:
            store.transition(job_id, JobStatus.EDITING, message="editing")
        result = upstreams.edit(
            record.spec.to_edit_request(plan),
            job_id=job_id,
            on_progress=lambda event: _on_progress(store, job_id, event),
        )
        store.finish(job_id, result)
        logger.info("job %s done", job_id)
    except InvalidTransition as exc:
        # Cancelled by the client, or finished by another delivery of the same job: nothing to undo.
        logger.info("job %s stopped: it is now %s", job_id, exc.current.value)
    except ReplanError as exc:
        if is_transient(exc) and not final_attempt:
            _note(store, job_id, f"{exc.message}; will retry")
            raise
        logger.warning("job %s failed: %s", job_id, exc)
        _fail_if_active(store, job_id, exc)
    except Exception as exc:
        logger.exception("job %s failed unexpectedly", job_id)
        _fail_if_active(store, job_id, ReplanError(f"internal error while running the job ({type(exc).__name__})"))
        raise
    return store.get(job_id)


def _on_progress(store: JobStore, job_id: str, event: ProgressEvent) -> None:
    """Relay the editor's step events; raises `InvalidTransition` once the job was cancelled."""
    if event.stage is ProgressStage.STEP:
        store.record_progress(job_id, event)


def _note(store: JobStore, job_id: str, message: str) -> None:
    record = store.get(job_id)
    if record is None or record.status.is_terminal:
        return
    event = ProgressEvent(job_id=job_id, stage=ProgressStage(record.status.value), message=message)
    with contextlib.suppress(InvalidTransition):
        store.apply(job_id, JobChange(to=None, allowed_from=ACTIVE, event=event))


def _fail_if_active(store: JobStore, job_id: str, error: ReplanError) -> None:
    with contextlib.suppress(InvalidTransition):
        store.fail(job_id, error)
