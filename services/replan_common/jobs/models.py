"""The async job: what was asked (`JobSpec`), where it stands (`JobRecord`, `JobStatus`) and what happened
(`JobEvent`). Shared by the gateway, which creates and reads jobs, and the worker, which runs them.

The state machine lives here once so both stores enforce the same transitions::

    queued ──► planning ──► editing ──► done
       │          │            │
       └──────────┴────────────┴──► error | cancelled

Re-entering the current state is allowed (a redelivered task resumes where the lost worker stopped);
a terminal state is never left.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum

from pydantic import BaseModel, Field, model_validator

from replan_common.errors import ErrorDetail
from replan_common.plan import RegionPlan
from replan_common.protocol import (
    EditRequest,
    EditResponse,
    EditSettings,
    ImageB64,
    PlanOptions,
    PlanRequest,
    PlanResponse,
    ProgressEvent,
)

#: How a job id travels from the gateway to a worker: this Celery task name, on this queue.
RUN_JOB_TASK = "replan.jobs.run"
JOBS_QUEUE = "jobs"


class JobKind(str, Enum):
    """`replan`: plan then edit. `edit`: edit with a given plan, raw planner text or a bare instruction."""

    REPLAN = "replan"
    EDIT = "edit"


class JobStatus(str, Enum):
    QUEUED = "queued"
    PLANNING = "planning"
    EDITING = "editing"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[JobStatus] = frozenset({JobStatus.DONE, JobStatus.ERROR, JobStatus.CANCELLED})
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.PLANNING, JobStatus.EDITING})

#: to-state -> the states it may be entered from (re-entry of the same state included, see module doc).
ALLOWED_FROM: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset(),
    JobStatus.PLANNING: frozenset({JobStatus.QUEUED, JobStatus.PLANNING}),
    JobStatus.EDITING: frozenset({JobStatus.QUEUED, JobStatus.PLANNING, JobStatus.EDITING}),
    JobStatus.DONE: frozenset({JobStatus.EDITING}),
    JobStatus.ERROR: ACTIVE,
    JobStatus.CANCELLED: ACTIVE,
}


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class JobSpec(BaseModel):
    """What the job does, as stored; validated once when the job is created."""

    kind: JobKind
    image: ImageB64
    instruction: str | None = Field(default=None, min_length=1, max_length=4000)
    plan: RegionPlan | None = None
    plan_text: str | None = Field(default=None, max_length=100_000)
    plan_options: PlanOptions = Field(default_factory=PlanOptions)
    settings: EditSettings = Field(default_factory=EditSettings)

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        if self.kind is JobKind.REPLAN:
            if self.instruction is None:
                raise ValueError("a replan job needs 'instruction'")
            if self.plan is not None or self.plan_text is not None:
                raise ValueError("a replan job makes its own plan; send kind 'edit' to give 'plan' or 'plan_text'")
        else:
            self.to_edit_request()  # exactly one of plan / plan_text / instruction
        return self

    def to_plan_request(self) -> PlanRequest:
        assert self.instruction is not None
        return PlanRequest(image=self.image, instruction=self.instruction, options=self.plan_options)

    def to_edit_request(self, plan: RegionPlan | None = None) -> EditRequest:
        """The editor request; a replan job passes the plan its planning stage produced."""
        if plan is not None:
            return EditRequest(image=self.image, plan=plan, settings=self.settings)
        return EditRequest(
            image=self.image,
            plan=self.plan,
            plan_text=self.plan_text,
            instruction=self.instruction,
            settings=self.settings,
        )


class JobRecord(BaseModel):
    """A job as the store holds it."""

    id: str
    kind: JobKind
    status: JobStatus = JobStatus.QUEUED
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    attempts: int = Field(default=0, description="How many times a worker started this job.")
    owner: str = Field(default="anonymous", description="Id of the API key that created the job (not the key).")
    request_id: str | None = Field(default=None, description="Request id of the call that created the job.")
    spec: JobSpec
    plan: PlanResponse | None = Field(default=None, description="The planning stage's output, once there.")
    result: EditResponse | None = None
    error: ErrorDetail | None = None


class JobEvent(ProgressEvent):
    """A progress event as logged for one job; `id` orders events and is the SSE event id."""

    id: str
    status: JobStatus
    at: datetime = Field(default_factory=utcnow)
