"""What the tasks of one worker process share: settings, runs and datasets, and HTTP clients, built once.

Caches are per process (a prefork worker child), keyed by what defines them, so a changed run config or
dataset file is picked up, and clients keep their connection pools across tasks.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path

from celery import Celery
from pydantic import SecretStr

from replan_eval.bench_run import RunConfig, build_judge, load_run, run_samples
from replan_eval.dataset import Sample
from replan_eval.editor_client import EditorClient, HttpEditorClient
from replan_eval.judge import Judge, make_judge_client
from replan_eval.planner_client import HttpPlannerClient
from replan_eval.rewards.store import RewardBatchStore, open_reward_store
from replan_eval.run_layout import RunLayout
from replan_eval.settings import EvalSettings, get_settings

_lock = threading.Lock()


def settings_of(app: Celery) -> EvalSettings:
    settings = getattr(app, "replan_settings", None)
    return settings if isinstance(settings, EvalSettings) else get_settings()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=32)
def _run(run_dir: str, _config_mtime: float) -> tuple[RunConfig, RunLayout]:
    return load_run(Path(run_dir))


def run(run_dir: str) -> tuple[RunConfig, RunLayout]:
    return _run(run_dir, _mtime(RunLayout(Path(run_dir)).config))


@lru_cache(maxsize=8)
def _samples(config_json: str, _dataset_mtime: float) -> dict[str, tuple[int, Sample]]:
    config = RunConfig.model_validate_json(config_json)
    return {s.image_id: (i, s) for i, s in enumerate(run_samples(config))}


def samples(config: RunConfig) -> dict[str, tuple[int, Sample]]:
    """``image_id → (index, sample)`` in dataset order."""
    return _samples(config.model_dump_json(), _mtime(config.dataset))


@lru_cache(maxsize=64)
def _editor(url: str, timeout_s: float, api_key: SecretStr | None) -> EditorClient:
    return HttpEditorClient(url, timeout_s=timeout_s, api_key=api_key)


def editors(settings: EvalSettings, urls: list[str]) -> list[EditorClient]:
    return [_editor(url, settings.editor_timeout_s, settings.service_api_key) for url in urls]


@lru_cache(maxsize=8)
def _planner(url: str, timeout_s: float, api_key: SecretStr | None) -> HttpPlannerClient:
    return HttpPlannerClient(url, timeout_s=timeout_s, api_key=api_key)


def planner(settings: EvalSettings, url: str) -> HttpPlannerClient:
    return _planner(url, settings.planner_timeout_s, settings.service_api_key)


@lru_cache(maxsize=8)
def _run_judge(run_dir: str, _config_mtime: float) -> Judge | None:
    config, layout = load_run(Path(run_dir))
    return build_judge(config, layout)


def run_judge(run_dir: str) -> Judge | None:
    return _run_judge(run_dir, _mtime(RunLayout(Path(run_dir)).config))


def reward_judge(settings: EvalSettings) -> Judge:
    """The reward judge from ``REPLAN_WORKER_JUDGE__*`` (no cache: every rollout is new)."""
    js = settings.judge
    key = js.model_dump_json()
    with _lock:
        judge = _reward_judges.get(key)
        if judge is None:
            client = make_judge_client(
                js.provider,
                model=js.model,
                base_url=js.base_url,
                api_key=js.api_key,
                max_tokens=js.max_tokens,
                timeout_s=js.timeout_s,
                max_attempts=js.max_attempts,
            )
            judge = _reward_judges[key] = Judge(client)
        return judge


_reward_judges: dict[str, Judge] = {}


@lru_cache(maxsize=4)
def reward_store(url: str, ttl_s: int) -> RewardBatchStore:
    return open_reward_store(url, ttl_s=ttl_s)
