"""The worker's Celery app: queues, routing, priorities and delivery guarantees. Tasks live in `tasks/`.

Queues: ``reward`` (GRPO rewards; a trainer waits on them), ``jobs`` (the gateway's async edits; a user
waits), ``judge`` (I/O-bound VLM calls) and ``bench`` (benchmark generation). Reward work comes first
twice over: its tasks carry the highest message priority, and with Redis the worker polls its queues in
the order ``reward, jobs, judge, bench`` (``queue_order_strategy=priority``) rather than round-robin.
Redis counts priority 0 as the highest.

Delivery: tasks are acknowledged only after they finish (``task_acks_late``) and requeued when the
worker process dies (``task_reject_on_worker_lost``); each process takes one message at a time
(``worker_prefetch_multiplier=1``), so a killed worker loses no task and holds none hostage. Redis
redelivers an unacknowledged message after ``visibility_timeout``, which settings keep above the hard
task time limit so a slow task is not run twice. Tasks are therefore idempotent by design.

``create_celery_app`` works with Redis (deployment) or an embedded SQLite broker and result backend
(``sqla+sqlite:///…`` / ``db+sqlite:///…``, for ``replan up`` without Redis). Building the app opens no
connection; it registers the task modules, including the gateway's ``tasks/jobs.py`` when present.
"""

from __future__ import annotations

import importlib.util

from celery import Celery
from kombu import Exchange, Queue

from replan_eval.settings import EvalSettings, get_settings

__all__ = ["QUEUE_ORDER", "QUEUE_PRIORITY", "TASK_MODULES", "celery_config", "create_celery_app"]

#: Queues in the order a worker polls them (first = most urgent).
QUEUE_ORDER = ("reward", "jobs", "judge", "bench")

#: Message priority per queue (Redis: 0 is the highest).
QUEUE_PRIORITY = {"reward": 0, "jobs": 3, "judge": 6, "bench": 9}

TASK_MODULES = ("replan_eval.tasks.bench", "replan_eval.tasks.judge", "replan_eval.tasks.reward")
_GATEWAY_TASK_MODULE = "replan_eval.tasks.jobs"


def _task_modules() -> list[str]:
    modules = list(TASK_MODULES)
    if importlib.util.find_spec(_GATEWAY_TASK_MODULE) is not None:
        modules.append(_GATEWAY_TASK_MODULE)
    return modules


def celery_config(settings: EvalSettings) -> dict[str, object]:
    """The Celery configuration for ``settings`` (a plain dict, so tests can inspect it)."""
    redis_broker = settings.broker_url.startswith(("redis://", "rediss://", "unix://"))
    redis_backend = settings.result_backend.startswith(("redis://", "rediss://", "unix://"))
    # Only Redis takes these: kombu's SQLAlchemy transport hands its options to create_engine, which rejects them
    # (and a database queue has no visibility timeout to set).
    transport_options: dict[str, object] = {}
    if redis_broker:
        transport_options = {
            "visibility_timeout": settings.visibility_timeout_s,
            "queue_order_strategy": "priority",
            "priority_steps": sorted(set(QUEUE_PRIORITY.values())),
            "sep": ":",
        }
    backend_options = {"visibility_timeout": settings.visibility_timeout_s} if redis_backend else {}
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": backend_options,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUE_ORDER],
        "task_default_queue": "bench",
        "task_default_exchange": "bench",
        "task_default_routing_key": "bench",
        "task_routes": {
            f"replan.{name}.*": {"queue": name, "exchange": name, "routing_key": name, "priority": QUEUE_PRIORITY[name]}
            for name in QUEUE_ORDER
        },
        "task_default_priority": QUEUE_PRIORITY["bench"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.concurrency,
        "task_time_limit": settings.task_time_limit_s,
        "task_soft_time_limit": max(1, settings.task_time_limit_s - 30),
        "task_track_started": True,
        "result_expires": 7 * 24 * 3600,
        "result_extended": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
    }


def create_celery_app(settings: EvalSettings | None = None) -> Celery:
    """The worker's app for ``settings`` (default: `get_settings()`, read from the environment now)."""
    settings = settings or get_settings()
    app = Celery("replan_eval", set_as_current=False)
    app.config_from_object(celery_config(settings))
    app.conf.include = _task_modules()
    # Tasks reach their settings through the app, so a test's app carries the test's settings.
    app.replan_settings = settings  # type: ignore[attr-defined]
    return app
