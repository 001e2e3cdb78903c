"""Fixtures shared by every test folder: free ports, a private real Redis, and a process launcher.

Without a GPU, Triton kernels (the `fast` attention residual) run in Triton's interpreter: it has to be
switched on before anything imports `triton`, since Triton's own library functions are compiled or
interpreted as the package is first imported. Set here, before any test module is collected.
"""

from __future__ import annotations

import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.processes import RunningProcess, free_port, start_process


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server of our own on a free loopback port, so tests never touch another Redis's data."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `.ci/run` installs it (apt-get install redis-server)")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("private redis-server did not start within 10 s")
            time.sleep(0.05)
    try:
        yield url
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., RunningProcess]]:
    """Start real processes for one test (`launch(name, args, url=..., env=...)`); all stopped afterwards."""
    started: list[RunningProcess] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir()

    def _launch(name: str, args: list[str], **kwargs: object) -> RunningProcess:
        running = start_process(name, args, log_dir=log_dir, **kwargs)  # type: ignore[arg-type]
        started.append(running)
        return running

    yield _launch
    for running in reversed(started):
        running.stop()
