"""With no planner reachable, planning calls fail fast with 503 and a code that names the planner."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.gateway.conftest import Stack, png_b64
from tests.support.processes import free_port

pytestmark = pytest.mark.integration


def test_planner_down_is_503_planner_unavailable(stack: Stack) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    gateway = stack.start_gateway(
        "gateway-no-planner", ready_path="/healthz", REPLAN_GATEWAY_PLANNER_URLS=json.dumps([dead])
    )
    try:
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
        assert ready.status_code == 503 and "no ready planner" in ready.json()["detail"]
        response = httpx.post(
            f"{gateway.url}/v1/replan",
            json={"image": png_b64(), "instruction": "make it snow"},
            headers=stack.auth(),
            timeout=60,
        )
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "planner_unavailable"
        assert "planner" in error["message"] and error["request_id"] == response.headers["X-Request-ID"]
        assert int(response.headers["Retry-After"]) >= 1
        # Edits need no planner and still work through the same gateway.
        edit = httpx.post(
            f"{gateway.url}/v1/edit",
            json={"image": png_b64(), "instruction": "make it snow", "settings": {"steps": 1}},
            headers=stack.auth(),
            timeout=60,
        )
        assert edit.status_code == 200, edit.text
    finally:
        gateway.stop()
