"""The real stack on loopback for the gateway's integration tests, started once per session.

Planner (tiny), editor (tiny), gateway and a Celery worker run as `replan serve ...` processes, exactly
as users run them, against the private Redis of `redis_url` (broker, results, job store, rate limits,
the editor's progress channel). They start concurrently (the gateway's health checks notice when the
models are loaded); the worker can be killed and replaced by a test.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from replan_gateway.settings import hash_api_key
from tests.support.processes import (
    RunningProcess,
    free_port,
    replan_command,
    start_process,
    start_replan_service,
    wait_until_ready,
)

API_KEY = "sk-integration-main"
LIMITED_KEY = "sk-integration-limited"
MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_PIXELS = 600_000


def png_bytes(width: int = 64, height: int = 48, color: tuple[int, int, int] = (90, 140, 210)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_b64(width: int = 64, height: int = 48) -> str:
    return base64.b64encode(png_bytes(width, height)).decode()


@dataclass
class Stack:
    """The running processes and what a test needs to talk to them."""

    redis_url: str
    log_dir: Path
    env: dict[str, str]
    planner: RunningProcess
    editor: RunningProcess
    gateway: RunningProcess
    workers: list[RunningProcess] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.gateway.url is not None
        return self.gateway.url

    def auth(self, key: str = API_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.auth(), timeout=120.0, **kwargs)  # type: ignore[arg-type]

    def start_worker(self, extra_args: list[str] | None = None) -> RunningProcess:
        """A `replan serve worker` on the jobs queue; returns once it is consuming."""
        index = len(self.workers)
        worker = start_process(
            f"worker-{index}-{time.monotonic_ns()}",
            replan_command(
                "serve",
                "worker",
                "--queues",
                "jobs",
                "--restore-interval-s",
                "1",
                "--hostname",
                f"w{index}-{time.monotonic_ns()}@test",
                *(extra_args or []),
            ),
            log_dir=self.log_dir,
            env=self.env,
        )
        self.workers.append(worker)
        deadline = time.monotonic() + 60
        while "ready." not in worker.log():
            if not worker.alive():
                raise RuntimeError(f"worker exited:\n{worker.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready:\n{worker.log()[-3000:]}")
            time.sleep(0.1)
        return worker

    def start_gateway(self, name: str = "gateway", *, ready_path: str = "/readyz", **extra_env: str) -> RunningProcess:
        port = free_port()
        return start_process(
            name,
            replan_command("serve", "gateway", "--port", str(port)),
            log_dir=self.log_dir,
            env={**self.env, **extra_env},
            url=f"http://127.0.0.1:{port}",
            ready_path=ready_path,
            timeout_s=120,
        )

    def all_processes(self) -> list[RunningProcess]:
        return [self.gateway, *self.workers, self.editor, self.planner]


def stack_env(redis_url: str, planner_url: str, editor_url: str) -> dict[str, str]:
    env = {
        "REPLAN_WORKER_BROKER_URL": f"{redis_url}/0",
        "REPLAN_WORKER_RESULT_BACKEND": f"{redis_url}/1",
        "REPLAN_WORKER_REWARD_STORE_URL": f"{redis_url}/2",
        "REPLAN_WORKER_PLANNER_URL": planner_url,
        "REPLAN_WORKER_EDITOR_URLS": json.dumps([editor_url]),
        # The shortest visibility timeout the worker settings allow: a killed worker's job is redelivered
        # after it (tests/integration/gateway/test_gateway_worker_loss.py waits for exactly this).
        "REPLAN_WORKER_VISIBILITY_TIMEOUT_S": "60",
        "REPLAN_WORKER_TASK_TIME_LIMIT_S": "50",
        "REPLAN_JOBS_STORE_URL": f"{redis_url}/3",
        "REPLAN_GATEWAY_REDIS_URL": f"{redis_url}/4",
        "REPLAN_GATEWAY_PLANNER_URLS": json.dumps([planner_url]),
        "REPLAN_GATEWAY_EDITOR_URLS": json.dumps([editor_url]),
        "REPLAN_GATEWAY_AUTH__KEYS": json.dumps(
            [
                {"name": "main", "sha256": hash_api_key(API_KEY)},
                {"name": "limited", "sha256": hash_api_key(LIMITED_KEY), "rate_limit": 3},
            ]
        ),
        "REPLAN_GATEWAY_RATE_LIMIT__WINDOW_S": "3600",
        "REPLAN_GATEWAY_RATE_LIMIT__REQUESTS_PER_WINDOW": "1000",
        "REPLAN_GATEWAY_ROUTING__HEALTH_INTERVAL_S": "1",
        "REPLAN_GATEWAY_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "REPLAN_GATEWAY_IMAGES__MAX_PIXELS": str(MAX_PIXELS),
        "REPLAN_EDITOR_REDIS_URL": f"{redis_url}/5",
    }
    # Never inherit a switch that would turn auth off, or settings meant for another stack.
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REPLAN_")}
    return {**inherited, **env}


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("stack-logs")
    planner_port, editor_port, gateway_port = free_port(), free_port(), free_port()
    planner_url, editor_url = f"http://127.0.0.1:{planner_port}", f"http://127.0.0.1:{editor_port}"
    env = stack_env(redis_url, planner_url, editor_url)
    started: list[RunningProcess] = []
    try:
        for service, port in (("planner", planner_port), ("editor", editor_port), ("gateway", gateway_port)):
            started.append(start_replan_service(service, port, log_dir=log_dir, env=env, tiny=service != "gateway"))
        planner, editor, gateway = started
        stack = Stack(redis_url=redis_url, log_dir=log_dir, env=env, planner=planner, editor=editor, gateway=gateway)
        stack.start_worker()
        started.extend(stack.workers)
        for process in (planner, editor, gateway):
            wait_until_ready(process, "/readyz", 180)
        yield stack
        started = stack.all_processes()
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def make_png() -> Callable[..., str]:
    return png_b64
