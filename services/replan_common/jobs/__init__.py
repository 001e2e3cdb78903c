"""Async jobs, shared by the gateway (creates, reads, cancels, streams events) and the worker (runs them).

`models` (the job, its state machine, its events), `store` (the interface) with `redis_store` and
`sqlite_store`, `runner` (run one job to the end, idempotently), `upstream` (planner and editor over HTTP
for the runner), `settings` (`REPLAN_JOBS_*`) and `sse` (event-stream framing). No module here imports a
web framework or a queue library.
"""

from replan_common.jobs.models import JobEvent, JobKind, JobRecord, JobSpec, JobStatus
from replan_common.jobs.store import InvalidTransition, JobConflict, JobNotFound, JobStore, new_job_id

__all__ = [
    "InvalidTransition",
    "JobConflict",
    "JobEvent",
    "JobKind",
    "JobNotFound",
    "JobRecord",
    "JobSpec",
    "JobStatus",
    "JobStore",
    "new_job_id",
]
