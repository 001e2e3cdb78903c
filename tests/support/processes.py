"""Start real service processes on loopback and wait until they answer.

Used by service and integration tests: every service runs as its own `replan serve ...` (or uvicorn)
process, exactly as users run it; tests talk to it over HTTP and read its log on failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningProcess:
    """A child process with its log file; `url` is its HTTP base URL when it serves HTTP."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            self.process.send_signal(sig)
            self.process.wait(timeout=30)

    def stop(self, timeout_s: float = 15.0) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_process(
    name: str,
    args: list[str],
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    url: str | None = None,
    ready_path: str | None = "/readyz",
    timeout_s: float = 90.0,
    cwd: Path | None = None,
) -> RunningProcess:
    """Start `args`; when `url` and `ready_path` are given, wait until GET url+ready_path answers 200."""
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=cwd, start_new_session=True
        )
    running = RunningProcess(name=name, process=process, log_path=log_path, url=url, env=env or {})
    if url and ready_path:
        wait_until_ready(running, ready_path, timeout_s)
    return running


def wait_until_ready(running: RunningProcess, ready_path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if not running.alive():
            raise RuntimeError(f"{running.name} exited with {running.process.returncode}:\n{running.log()[-4000:]}")
        try:
            response = httpx.get(f"{running.url}{ready_path}", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}: {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    running.stop()
    raise TimeoutError(f"{running.name} not ready after {timeout_s}s ({last}):\n{running.log()[-4000:]}")


def replan_command(*args: str) -> list[str]:
    """The `replan` CLI as a subprocess argument list, run by the interpreter running the tests."""
    return [sys.executable, "-m", "replan_common.cli", *args]


def start_replan_service(
    service: str,
    port: int,
    *,
    log_dir: Path,
    env: dict[str, str] | None = None,
    tiny: bool = False,
    ready_path: str | None = None,
) -> RunningProcess:
    """`replan serve <service> [--preset tiny] --port <port>` on loopback, as users start it.

    `ready_path=None` returns at once (callers start several services, then wait for them together).
    """
    preset = ["--preset", "tiny"] if tiny else []
    return start_process(
        service,
        replan_command("serve", service, *preset, "--port", str(port)),
        log_dir=log_dir,
        env=env,
        url=f"http://127.0.0.1:{port}",
        ready_path=ready_path,
    )
