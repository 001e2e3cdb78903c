"""Real processes for the eval worker's integration tests: tiny editor, stand-in judge, gateway, workers.

The tiny editor (`replan serve editor --preset tiny`), the judge stub (`judge_stub.py`, recorded replies)
and the gateway (`replan serve gateway`) start once per session; Celery workers start per test through
`launch` (`replan serve worker ...`, exactly as users run them) so a test can kill its own. Everything
talks over loopback to the private Redis of `redis_url`, in databases 8-15 so the gateway suite's
stack (0-5) never sees these tasks: broker 8, results 9, reward store 10, job store 11, gateway 12; a
benchmark test gives its worker a broker database of its own (13, 14).
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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

API_KEY = "sk-eval-integration"
JUDGE_MODEL = "Qwen/Qwen2.5-VL-72B-Instruct"
Launch = Callable[..., RunningProcess]

#: The judge stub's recorded scores: Q=4, T=5, E=3, C=5. Per sample, by hand (facts §5):
#: Overall = (4 + 5 + 3 + 5)/4 = 4.25; Weighted = (5 + 3 + 4·3/5 + 5·3/5)/4 = (8 + 2.4 + 3)/4 = 3.35.
OVERALL, WEIGHTED = 4.25, 3.35


def png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def png_b64(color: tuple[int, int, int] = (90, 140, 210)) -> str:
    return base64.b64encode(png_bytes(color)).decode()


def make_ivedit_dataset(directory: Path, n: int) -> Path:
    """``n`` IV-Edit rows as JSONL with the images beside it (paths relative to the file)."""
    directory.mkdir(parents=True, exist_ok=True)
    tasks = ["Attribute Modification", "Prediction", "Text Content", "Deletion", "Replacement", "Physics Reasoning"]
    refs = ["Spatial", "Feature", "Text-Content", "Knowledge", "Understanding", "Text-Visual"]
    lines = []
    for i in range(n):
        image = directory / f"img_{i}.png"
        image.write_bytes(png_bytes((20 * i % 256, 120, 200 - 10 * i % 200)))
        extra = {
            "image_id": 500 + i,
            "referring_expression": f"the object number {i}",
            "task_type": tasks[i % len(tasks)],
            "referring_type": refs[i % len(refs)],
        }
        row = {"image": image.name, "prompt": f"make object {i} red", "answer": "", "extra_info": json.dumps(extra)}
        lines.append(json.dumps(row))
    path = directory / "ivedit.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for_worker(worker: RunningProcess, timeout_s: float = 60.0) -> RunningProcess:
    """Celery prints 'ready.' once it consumes."""
    deadline = time.monotonic() + timeout_s
    while "ready." not in worker.log():
        if not worker.alive():
            raise RuntimeError(f"{worker.name} exited:\n{worker.log()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{worker.name} not ready:\n{worker.log()[-3000:]}")
        time.sleep(0.1)
    return worker


@dataclass
class EvalServices:
    """The session's long-lived processes and the environment every worker and command shares."""

    redis_url: str
    editor: RunningProcess
    judge: RunningProcess
    gateway: RunningProcess
    env: dict[str, str]

    @property
    def editor_url(self) -> str:
        assert self.editor.url is not None
        return self.editor.url

    @property
    def judge_url(self) -> str:
        assert self.judge.url is not None
        return f"{self.judge.url}/v1"

    @property
    def gateway_url(self) -> str:
        assert self.gateway.url is not None
        return self.gateway.url

    def judge_calls(self) -> dict[str, dict[str, int]]:
        return dict(httpx.get(f"{self.judge.url}/calls", timeout=10).json())

    def editor_edits_ok(self) -> float:
        """The editor's ``replan_editor_edits_total{outcome="ok"}``."""
        for line in httpx.get(f"{self.editor_url}/metrics", timeout=10).text.splitlines():
            if line.startswith('replan_editor_edits_total{outcome="ok"}'):
                return float(line.split()[-1])
        raise AssertionError("the editor exports no replan_editor_edits_total")

    def worker_env(self, broker_db: int = 8) -> dict[str, str]:
        return {**self.env, "REPLAN_WORKER_BROKER_URL": f"{self.redis_url}/{broker_db}"}

    def start_worker(self, launch: Launch, queues: str, name: str, broker_db: int = 8) -> RunningProcess:
        hostname = f"{name}-{os.getpid()}@eval-test"
        args = replan_command(
            "serve", "worker", "--queues", queues, "--restore-interval-s", "1", "--hostname", hostname
        )
        return wait_for_worker(launch(name, args, env=self.worker_env(broker_db)))


def eval_env(redis_url: str, editor_url: str, judge_url: str) -> dict[str, str]:
    env = {
        "REPLAN_WORKER_BROKER_URL": f"{redis_url}/8",
        "REPLAN_WORKER_RESULT_BACKEND": f"{redis_url}/9",
        "REPLAN_WORKER_REWARD_STORE_URL": f"{redis_url}/10",
        "REPLAN_WORKER_EDITOR_URLS": json.dumps([editor_url]),
        "REPLAN_WORKER_PLANNER_URL": f"http://127.0.0.1:{free_port()}",  # no planner: plain-edit methods only
        "REPLAN_WORKER_JUDGE__BASE_URL": judge_url,
        "REPLAN_WORKER_JUDGE__MODEL": JUDGE_MODEL,
        # The shortest the settings allow: a killed worker's task comes back after it.
        "REPLAN_WORKER_VISIBILITY_TIMEOUT_S": "60",
        "REPLAN_WORKER_TASK_TIME_LIMIT_S": "50",
        "REPLAN_WORKER_REWARD_TIMEOUT_S": "120",
        "REPLAN_JOBS_STORE_URL": f"{redis_url}/11",
        "REPLAN_GATEWAY_REDIS_URL": f"{redis_url}/12",
        "REPLAN_GATEWAY_EDITOR_URLS": json.dumps([editor_url]),
        "REPLAN_GATEWAY_PLANNER_URLS": json.dumps([f"http://127.0.0.1:{free_port()}"]),
        "REPLAN_GATEWAY_AUTH__KEYS": json.dumps([{"name": "trainer", "sha256": hash_api_key(API_KEY)}]),
        "REPLAN_GATEWAY_RATE_LIMIT__REQUESTS_PER_WINDOW": "10000",
    }
    # Never inherit settings meant for another stack (or a switch that turns auth off).
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("REPLAN_")}
    return {**inherited, **env}


@pytest.fixture(scope="session")
def eval_services(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvalServices]:
    log_dir = tmp_path_factory.mktemp("eval-logs")
    editor_port, judge_port, gateway_port = free_port(), free_port(), free_port()
    editor_url, judge_url = f"http://127.0.0.1:{editor_port}", f"http://127.0.0.1:{judge_port}"
    env = eval_env(redis_url, editor_url, f"{judge_url}/v1")
    started: list[RunningProcess] = []
    try:
        # Editor and judge start at once; the gateway needs neither to start (it checks health in the background).
        editor = start_replan_service("editor", editor_port, log_dir=log_dir, env=env, tiny=True)
        started.append(editor)
        stub = Path(__file__).with_name("judge_stub.py")
        judge = start_process(
            "judge", [sys.executable, str(stub), "--port", str(judge_port)], log_dir=log_dir, env=env, url=judge_url
        )
        started.append(judge)
        # /readyz stays degraded: there is no planner in this stack.
        gateway = start_replan_service("gateway", gateway_port, log_dir=log_dir, env=env, ready_path="/healthz")
        started.append(gateway)
        wait_until_ready(editor, "/readyz", 180)
        yield EvalServices(redis_url=redis_url, editor=editor, judge=judge, gateway=gateway, env=env)
    finally:
        for process in reversed(started):
            process.stop()
