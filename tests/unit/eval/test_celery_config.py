"""Settings validation and the Celery app's queues, routes, priorities and delivery guarantees."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from replan_eval.celery_app import QUEUE_ORDER, QUEUE_PRIORITY, celery_config, create_celery_app
from replan_eval.settings import EvalSettings, get_settings


def test_settings_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAN_WORKER_BROKER_URL", "redis://broker:6379/5")
    monkeypatch.setenv("REPLAN_WORKER_EDITOR_URLS", '["http://e1:8200", "http://e2:8200"]')
    monkeypatch.setenv("REPLAN_WORKER_JUDGE__MODEL", "gpt-4o")
    monkeypatch.setenv("REPLAN_WORKER_JUDGE__API_KEY", "sk-secret")
    get_settings.cache_clear()
    try:
        settings = get_settings()
    finally:
        get_settings.cache_clear()
    assert settings.broker_url == "redis://broker:6379/5"
    assert settings.editor_urls == ["http://e1:8200", "http://e2:8200"]
    assert settings.judge.model == "gpt-4o"
    assert settings.judge.api_key is not None and "sk-secret" not in repr(settings)


def test_visibility_timeout_must_exceed_the_task_time_limit() -> None:
    with pytest.raises(ValidationError, match="REPLAN_WORKER_VISIBILITY_TIMEOUT_S"):
        EvalSettings(task_time_limit_s=3600, visibility_timeout_s=3600)


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("broker_url", "amqp://x", "REPLAN_WORKER_BROKER_URL"),
        ("result_backend", "rpc://", "REPLAN_WORKER_RESULT_BACKEND"),
        ("reward_store_url", "mongodb://x", "REPLAN_WORKER_REWARD_STORE_URL"),
    ],
)
def test_bad_urls_name_their_variable(field: str, value: str, variable: str) -> None:
    with pytest.raises(ValidationError, match=variable):
        EvalSettings(**{field: value})


def test_delivery_guarantees_and_visibility_timeout() -> None:
    config = celery_config(EvalSettings(task_time_limit_s=1800, visibility_timeout_s=7200))
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["task_time_limit"] == 1800
    transport = config["broker_transport_options"]
    assert transport["visibility_timeout"] == 7200  # type: ignore[index]
    assert transport["queue_order_strategy"] == "priority"  # type: ignore[index]


def test_reward_is_polled_first_and_has_the_highest_priority() -> None:
    assert QUEUE_ORDER[0] == "reward"
    assert QUEUE_PRIORITY["reward"] == min(QUEUE_PRIORITY.values())  # Redis: 0 is the highest
    assert set(QUEUE_ORDER) == {"jobs", "bench", "judge", "reward"}


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("replan.reward.score_sample", "reward"),
        ("replan.reward.score_batch", "reward"),
        ("replan.jobs.run", "jobs"),
        ("replan.judge.score_sample", "judge"),
        ("replan.bench.generate_sample", "bench"),
        ("replan.bench.report_run", "bench"),
    ],
)
def test_tasks_route_to_their_queue_with_its_priority(task: str, queue: str) -> None:
    app = create_celery_app(EvalSettings())
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue
    assert route["priority"] == QUEUE_PRIORITY[queue]


def test_sqlite_broker_for_the_local_stack() -> None:
    settings = EvalSettings(broker_url="sqla+sqlite:////tmp/x.sqlite", result_backend="db+sqlite:////tmp/r.sqlite")
    config = celery_config(settings)
    assert config["broker_url"] == "sqla+sqlite:////tmp/x.sqlite"
    # kombu's SQLAlchemy transport passes these to create_engine, which rejects Redis-only keys
    assert config["broker_transport_options"] == {}
    assert config["result_backend_transport_options"] == {}


def test_app_registers_every_task_module_and_opens_no_connection() -> None:
    app = create_celery_app(EvalSettings(broker_url="redis://127.0.0.1:1/0"))  # nothing listens on port 1
    app.loader.import_default_modules()
    names = {name for name in app.tasks if name.startswith("replan.")}
    assert {
        "replan.bench.start_run",
        "replan.bench.generate_sample",
        "replan.bench.report_run",
        "replan.judge.score_sample",
        "replan.judge.score_run",
        "replan.reward.score_sample",
        "replan.reward.score_batch",
    } <= names
