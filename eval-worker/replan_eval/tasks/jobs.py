"""The `jobs` queue's task: run one async job of the gateway, given its id only.

Thin on purpose: the job (spec, state, plan, result, events) lives in the job store, and
`replan_common.jobs.runner.run_job` does the work idempotently, so a redelivered message (a worker killed
mid-job, `task_acks_late` + `task_reject_on_worker_lost`, the Redis visibility timeout) resumes the job
instead of repeating it: finished jobs are skipped, a stored plan is not made again, and only one
delivery can enter `done`. An upstream outage is waited out with Celery retries while the job stays
active; after the last retry the job fails with the upstream's error code.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Task, shared_task

from replan_common.context import reset_request_id, set_request_id
from replan_common.errors import ReplanError
from replan_common.jobs.models import RUN_JOB_TASK
from replan_common.jobs.runner import is_transient, run_job
from replan_common.jobs.settings import JobsSettings, get_jobs_settings, open_job_store
from replan_common.jobs.store import JobStore
from replan_common.jobs.upstream import HttpJobUpstreams
from replan_eval.tasks import _context

logger = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _store(url: str, ttl_s: int) -> JobStore:
    """One store per process (connections are pooled inside)."""
    return open_job_store(url, ttl_s=ttl_s)


@lru_cache(maxsize=4)
def _upstreams(
    planner_url: str, editor_urls: tuple[str, ...], plan_timeout_s: float, edit_timeout_s: float, api_key: str | None
) -> HttpJobUpstreams:
    return HttpJobUpstreams(
        planner_urls=[planner_url],
        editor_urls=list(editor_urls),
        plan_timeout_s=plan_timeout_s,
        edit_timeout_s=edit_timeout_s,
        api_key=api_key,
    )


@shared_task(bind=True, name=RUN_JOB_TASK, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run(self: Task, job_id: str) -> None:
    """Run (or resume) job `job_id` to a terminal state."""
    settings = _context.settings_of(self.app)
    jobs: JobsSettings = get_jobs_settings()
    store = _store(jobs.store_url, jobs.ttl_s)
    api_key = settings.service_api_key.get_secret_value() if settings.service_api_key else None
    upstreams = _upstreams(
        settings.planner_url,
        tuple(settings.editor_urls),
        settings.planner_timeout_s,
        settings.editor_timeout_s,
        api_key,
    )
    record = store.get(job_id)
    token = set_request_id(record.request_id if record is not None else None)
    try:
        retries = self.request.retries or 0
        run_job(job_id, store=store, upstreams=upstreams, final_attempt=retries >= jobs.upstream_retries)
    except ReplanError as exc:
        if not is_transient(exc):
            raise
        delay = exc.retry_after_s or jobs.upstream_retry_delay_s
        logger.warning("job %s waits %.0f s for an upstream (%s); retry %d", job_id, delay, exc.code, retries + 1)
        raise self.retry(countdown=delay, max_retries=jobs.upstream_retries, exc=exc) from exc
    finally:
        reset_request_id(token)
