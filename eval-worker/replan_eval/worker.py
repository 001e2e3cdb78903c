"""`replan serve worker`: start a Celery worker of the eval app on chosen queues.

The queues whose tasks drive the GPU editors (`jobs`, `bench`, `reward`) run one task at a time in the
worker's own process (`--pool=solo`): a worker per editor slot scales them, prefetch stays at one message,
and nothing is forked after imports (CUDA and fork do not mix, should a task ever touch a device). The
I/O-bound `judge` queue alone runs on threads with the configured concurrency. Importing this module
imports only Typer; Celery and the app load when the command runs.
"""

from __future__ import annotations

import logging
import os
import socket
from enum import Enum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from celery import Celery

GPU_BOUND_QUEUES = frozenset({"jobs", "bench", "reward"})
KNOWN_QUEUES = ("reward", "jobs", "judge", "bench")


class Pool(str, Enum):
    AUTO = "auto"
    SOLO = "solo"
    THREADS = "threads"
    PREFORK = "prefork"


def worker_argv(
    queues: list[str], *, pool: Pool, concurrency: int | None, default_concurrency: int, loglevel: str, hostname: str
) -> list[str]:
    """The `celery worker` arguments for these queues (pool and concurrency resolved as the module says)."""
    unknown = [q for q in queues if q not in KNOWN_QUEUES]
    if unknown or not queues:
        raise typer.BadParameter(f"unknown queue(s) {unknown or queues}; choose from {', '.join(KNOWN_QUEUES)}")
    gpu_bound = any(q in GPU_BOUND_QUEUES for q in queues)
    if pool is Pool.AUTO:
        pool = Pool.SOLO if gpu_bound else Pool.THREADS
    if pool is Pool.SOLO:
        concurrency = 1
    elif concurrency is None:
        concurrency = 1 if gpu_bound else default_concurrency
    return [
        "worker",
        f"--queues={','.join(queues)}",
        f"--pool={pool.value}",
        f"--concurrency={concurrency}",
        f"--loglevel={loglevel.upper()}",
        f"--hostname={hostname}",
        "--without-gossip",
        "--without-mingle",
    ]


def serve_worker(
    queues: Annotated[
        str, typer.Option("--queues", "-Q", help="Comma-separated queues: reward, jobs, judge, bench.")
    ] = "jobs",
    pool: Annotated[
        Pool, typer.Option(help="auto: solo for GPU-bound queues (jobs, bench, reward), threads for judge.")
    ] = Pool.AUTO,
    concurrency: Annotated[
        int | None, typer.Option("--concurrency", "-c", min=1, help="Ignored by solo (always 1).")
    ] = None,
    restore_interval_s: Annotated[
        int,
        typer.Option(
            min=1,
            help="Redis broker: seconds between sweeps that requeue messages of a lost worker once their "
            "visibility timeout has passed.",
        ),
    ] = 5,
    hostname: Annotated[str | None, typer.Option(help="Worker node name; default: replan-<queues>@<host>.")] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING, ...")] = "INFO",
    log_json: Annotated[bool, typer.Option(help="JSON log lines (else plain text).")] = True,
    requeue_active_jobs: Annotated[
        bool,
        typer.Option(
            help="First queue again every unfinished job of the job store. Only for the sole worker of a store "
            "(replan up), whose broker may have lost a killed run's message; beside other workers a running job "
            "would run twice (harmless, but wasted work: only one run can finish it).",
        ),
    ] = False,
) -> None:
    """Run a Celery worker for the eval app (broker and settings from REPLAN_WORKER_*)."""
    from replan_common.log import configure_logging
    from replan_eval.celery_app import create_celery_app
    from replan_eval.settings import get_settings

    names = [q.strip() for q in queues.split(",") if q.strip()]
    settings = get_settings()
    configure_logging(log_level, json_lines=log_json)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per upstream call is noise here
    app = create_celery_app(settings)
    if settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        # Kombu's default sweep for abandoned messages runs about every 100 s; a killed worker's job should
        # come back soon after its visibility timeout, so sweep often (one cheap ZRANGE per sweep).
        options = dict(app.conf.broker_transport_options or {})
        options.update(unacked_restore_interval=restore_interval_s, unacked_restore_throttle=1)
        app.conf.broker_transport_options = options
    if requeue_active_jobs and "jobs" in names:
        _requeue_active_jobs(app)
    argv = worker_argv(
        names,
        pool=pool,
        concurrency=concurrency,
        default_concurrency=settings.concurrency,
        loglevel=log_level,
        hostname=hostname or f"replan-{'-'.join(names)}-{os.getpid()}@{socket.gethostname()}",
    )
    app.worker_main(argv=argv)


def _requeue_active_jobs(app: Celery) -> None:
    from replan_common.jobs.models import JOBS_QUEUE, RUN_JOB_TASK
    from replan_common.jobs.settings import get_jobs_settings, open_job_store

    jobs = get_jobs_settings()
    store = open_job_store(jobs.store_url, ttl_s=jobs.ttl_s)
    try:
        ids = store.active_job_ids()
    finally:
        store.close()
    for job_id in ids:
        app.send_task(RUN_JOB_TASK, args=[job_id], queue=JOBS_QUEUE, task_id=job_id)
    if ids:
        logging.getLogger(__name__).warning("queued %d unfinished job(s) again", len(ids))
