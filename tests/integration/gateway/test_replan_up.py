"""`replan up --preset tiny`: the whole stack from one command, serving within 60 s, stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway.conftest import png_b64
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

READY_WITHIN_S = 60


def _processes_using(state_dir: Path) -> list[int]:
    """Processes whose environment points at this state directory: the children of that `replan up`."""
    found = []
    marker = str(state_dir).encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker in environ:
                found.append(int(entry.name))
    return found


def test_replan_up_serves_a_working_api_within_60_s_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAN_")}
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "replan_common.cli", "up", "--preset", "tiny", "--port", str(port),
         "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        text=True,
    )  # fmt: skip
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            if "Ctrl-C stops everything" in line:
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(READY_WITHIN_S), "not ready within 60 s:\n" + "\n".join(lines)
        elapsed = time.monotonic() - started
        assert elapsed < READY_WITHIN_S
        output = "\n".join(lines)
        assert f"http://127.0.0.1:{port}/v1" in output and f"http://127.0.0.1:{port}/" in output
        assert "RANDOM-WEIGHT" in output

        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:  # auth is off on loopback
            replan = client.post("/v1/replan", json={"image": png_b64(), "instruction": "x", "settings": {"steps": 1}})
            assert replan.status_code == 200, replan.text
            job = client.post("/v1/jobs", json={"image": png_b64(), "instruction": "x", "settings": {"steps": 1}})
            assert job.status_code == 202, job.text
            deadline = time.monotonic() + 60
            while (status := client.get(f"/v1/jobs/{job.json()['id']}").json()["status"]) != "done":
                assert status not in ("error", "cancelled") and time.monotonic() < deadline, status
                time.sleep(0.3)
        assert (state / "jobs.sqlite").exists() and (state / "broker.sqlite").exists()
        assert len(_processes_using(state.resolve())) == 4  # planner, editor, worker, gateway
    finally:
        process.send_signal(signal.SIGINT)
        try:
            code = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        reader.join(timeout=5)
    assert code == 0, "\n".join(lines)
    assert lines[-1].endswith("stopped")
    assert _processes_using(state.resolve()) == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_replan_up_refuses_a_public_interface_without_a_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAN_")}
    result = subprocess.run(
        [sys.executable, "-m", "replan_common.cli", "up", "--preset", "tiny", "--host", "0.0.0.0",
         "--port", str(free_port()), "--state-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--api-key" in result.stderr
