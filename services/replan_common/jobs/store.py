"""The job store interface: job records, their state machine, results and an ordered event log per job.

One interface, two implementations: `RedisJobStore` (deployment: a hash and a Redis Stream per job, with a
TTL) and `SqliteJobStore` (`replan up` without a Redis server: one SQLite file, safe across processes).
Every state change is one atomic compare-and-set that also appends its event, so the log and the record
never disagree and two workers racing on a redelivered job cannot both finish it. What a job does is
not here (`runner`), nor how it is queued (the gateway's and worker's business).
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass

from replan_common.errors import ErrorDetail, NotFound, ReplanError
from replan_common.jobs.models import (
    ACTIVE,
    ALLOWED_FROM,
    JobEvent,
    JobRecord,
    JobStatus,
)
from replan_common.protocol import EditResponse, PlanResponse, ProgressEvent, ProgressStage


class JobNotFound(NotFound):
    default_code = "job_not_found"


class JobConflict(ReplanError):
    """The job is not in a state that allows the change (e.g. cancelling a finished job)."""

    status = 409
    type = "invalid_request_error"
    default_code = "job_state_conflict"


class InvalidTransition(JobConflict):
    """Raised by the store when a compare-and-set finds the job in another state."""

    def __init__(self, job_id: str, current: JobStatus, to: JobStatus | None) -> None:
        wanted = f"become {to.value}" if to is not None else "change"
        super().__init__(f"job {job_id} is {current.value}; it cannot {wanted}", code="invalid_job_transition")
        self.current = current
        self.to = to


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


@dataclass(frozen=True)
class Applied:
    """What a change did: the logged event's id (None without an event), the status and attempt count after."""

    event_id: str | None
    status: JobStatus
    attempts: int


@dataclass(frozen=True)
class JobChange:
    """One atomic change: if the job is in `allowed_from`, enter `to` (None: stay), set fields, log `event`."""

    to: JobStatus | None
    allowed_from: frozenset[JobStatus]
    event: ProgressEvent | None = None
    plan: PlanResponse | None = None
    result: EditResponse | None = None
    error: ErrorDetail | None = None
    increment_attempts: bool = False

    def encoded_fields(self) -> dict[str, str]:
        """The record fields this change sets, JSON-encoded (both stores keep these field names)."""
        out: dict[str, str] = {}
        if self.to is not None:
            out["status"] = self.to.value
        if self.plan is not None:
            out["plan"] = self.plan.model_dump_json()
        if self.result is not None:
            out["result"] = self.result.model_dump_json()
        if self.error is not None:
            out["error"] = self.error.model_dump_json()
        return out


class JobStore(ABC):
    """Where jobs live. Implementations provide the six primitives; the verbs below are shared."""

    ttl_s: int

    # ---------------------------------------------------------------------------------- primitives

    @abstractmethod
    def create(self, record: JobRecord) -> JobRecord:
        """Store a new job in `queued` and log its `queued` event."""

    @abstractmethod
    def get(self, job_id: str) -> JobRecord | None:
        """The job, or None when it never existed or has expired."""

    @abstractmethod
    def apply(self, job_id: str, change: JobChange) -> Applied:
        """Apply `change` atomically (check state, set fields, append the event, refresh the TTL).

        Raises `JobNotFound`, or `InvalidTransition` when the job is not in `change.allowed_from`.
        """

    @abstractmethod
    def events(self, job_id: str, *, after: str | None = None, limit: int = 1000) -> list[JobEvent]:
        """The job's events in order, those after event id `after` only (exclusive)."""

    @abstractmethod
    def active_job_ids(self, *, limit: int = 10_000) -> list[str]:
        """Ids of jobs not yet finished (queued, planning or editing), oldest first."""

    @abstractmethod
    def ping(self) -> None:
        """Raise if the store cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # ---------------------------------------------------------------------------------- verbs

    def require(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:
            raise JobNotFound(f"no job {job_id} (it never existed or expired)", param="id")
        return record

    def transition(
        self,
        job_id: str,
        to: JobStatus,
        *,
        message: str | None = None,
        **kwargs: object,
    ) -> Applied:
        """Enter `to` from any state the state machine allows, logging an event of that stage."""
        event = ProgressEvent(job_id=job_id, stage=ProgressStage(to.value), message=message)
        change = JobChange(to=to, allowed_from=ALLOWED_FROM[to], event=event, **kwargs)  # type: ignore[arg-type]
        return self.apply(job_id, change)

    def start_attempt(self, job_id: str) -> int:
        """Count a worker starting (or resuming) an active job; returns the attempt number."""
        applied = self.apply(job_id, JobChange(to=None, allowed_from=ACTIVE, increment_attempts=True))
        if applied.attempts > 1:
            message = f"resumed by a worker (attempt {applied.attempts}); finished stages are not redone"
            stage = ProgressStage(applied.status.value)
            event = ProgressEvent(job_id=job_id, stage=stage, message=message)
            self.apply(job_id, JobChange(to=None, allowed_from=ACTIVE, event=event))
        return applied.attempts

    def record_progress(self, job_id: str, event: ProgressEvent) -> Applied:
        """Log a progress event (a denoising step) while the job is editing; raises if it no longer is."""
        event = event.model_copy(update={"job_id": job_id})
        return self.apply(job_id, JobChange(to=None, allowed_from=frozenset({JobStatus.EDITING}), event=event))

    def save_plan(self, job_id: str, plan: PlanResponse) -> Applied:
        """Keep the planning stage's output and enter `editing`, so a resumed job does not plan again."""
        message = f"plan ready: {len(plan.plan.regions)} region(s); editing"
        return self.transition(job_id, JobStatus.EDITING, message=message, plan=plan)

    def finish(self, job_id: str, result: EditResponse) -> Applied:
        """Store the result and enter `done`; only one caller can ever do this for a job."""
        return self.transition(job_id, JobStatus.DONE, message="done", result=result)

    def fail(self, job_id: str, error: ReplanError | ErrorDetail) -> Applied:
        detail = error if isinstance(error, ErrorDetail) else error.to_detail()
        event = ProgressEvent(job_id=job_id, stage=ProgressStage.ERROR, message=detail.message, error_code=detail.code)
        return self.apply(job_id, JobChange(to=JobStatus.ERROR, allowed_from=ACTIVE, event=event, error=detail))

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job that has not finished; cancelling a cancelled job is a no-op."""
        record = self.require(job_id)
        if record.status is JobStatus.CANCELLED:
            return record
        try:
            self.transition(job_id, JobStatus.CANCELLED, message="cancelled by the client")
        except InvalidTransition as exc:
            if exc.current is not JobStatus.CANCELLED:
                raise JobConflict(
                    f"job {job_id} is already {exc.current.value} and cannot be cancelled",
                    code="job_already_finished",
                ) from exc
        return self.require(job_id)
