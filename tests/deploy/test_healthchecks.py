"""The health-check scripts the images run (`docker/healthcheck.py`, `docker/worker_healthcheck.py`), run as
Docker runs them: a subprocess whose exit status is the verdict."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.deploy.manifests import DOCKER_DIR
from tests.support.processes import free_port


def run_script(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("REPLAN_")}
    return subprocess.run(
        [sys.executable, str(DOCKER_DIR / name), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_check_passes_on_2xx_and_fails_otherwise(http_url: str) -> None:
    assert run_script("healthcheck.py", f"{http_url}/healthz").returncode == 0
    assert run_script("healthcheck.py", f"{http_url}/readyz").returncode == 1
    refused = run_script("healthcheck.py", f"http://127.0.0.1:{free_port()}/healthz")
    assert refused.returncode == 1 and "refused" in refused.stderr.lower()
    assert run_script("healthcheck.py").returncode == 2


def test_worker_check_passes_while_its_broker_answers(redis_url: str) -> None:
    assert run_script("worker_healthcheck.py", env={"REPLAN_WORKER_BROKER_URL": f"{redis_url}/0"}).returncode == 0


def test_worker_check_fails_when_its_broker_is_gone() -> None:
    result = run_script("worker_healthcheck.py", env={"REPLAN_WORKER_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"})
    assert result.returncode == 1
    assert "broker unreachable" in result.stderr
