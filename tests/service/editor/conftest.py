"""Real editor workers for the editor's service tests: `replan serve editor --preset tiny` on loopback.

One FLUX.1 Kontext worker (with `max_queue=1`, so a full queue is easy to reach, and progress published to a
private Redis) and one Qwen-Image-Edit worker (warm-up edit forced on), started together once per session:
both pipelines are the real diffusers classes with tiny random weights on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import RunningProcess, free_port, replan_command, start_process, wait_until_ready


def _start_editor(name: str, backbone: str, log_dir: Path, env: dict[str, str]) -> RunningProcess:
    port = free_port()
    args = replan_command(
        "serve", "editor", "--preset", "tiny", "--backbone", backbone, "--port", str(port), "--max-queue", "1"
    )
    return start_process(name, args, log_dir=log_dir, env=env, url=f"http://127.0.0.1:{port}", ready_path=None)


@pytest.fixture(scope="session")
def editors(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[dict[str, RunningProcess]]:
    log_dir = tmp_path_factory.mktemp("editor-logs")
    started = {
        "flux-kontext": _start_editor("editor-flux", "flux-kontext", log_dir, {"REPLAN_EDITOR_REDIS_URL": redis_url}),
        "qwen-image-edit": _start_editor("editor-qwen", "qwen-image-edit", log_dir, {"REPLAN_EDITOR_WARMUP": "always"}),
    }
    try:
        for running in started.values():
            wait_until_ready(running, "/readyz", timeout_s=120)
        yield started
    finally:
        for running in started.values():
            running.stop()


@pytest.fixture(scope="session")
def flux_url(editors: dict[str, RunningProcess]) -> str:
    url = editors["flux-kontext"].url
    assert url is not None
    return url


@pytest.fixture(scope="session")
def qwen_url(editors: dict[str, RunningProcess]) -> str:
    url = editors["qwen-image-edit"].url
    assert url is not None
    return url
