"""`replan serve planner --backend openai` as a real process, in front of a stub vLLM on loopback.

The stub replays recorded vLLM answers over real HTTP, so this runs the whole path users run: the CLI's
settings, uvicorn, readiness through `GET /v1/models`, the chat request and box mapping; and, with no
server at all, a 503 with a clear code while the planner itself stays up.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from planner_testkit import StubVLLM, png_bytes, recording

from replan_common.protocol import PlanResponse
from tests.support.processes import RunningProcess, free_port, replan_command

pytestmark = pytest.mark.integration

FAST_RETRIES = {"REPLAN_PLANNER_OPENAI__BACKOFF_S": "0", "REPLAN_PLANNER_OPENAI__BACKOFF_MAX_S": "0"}


def serve(launch: Callable[..., RunningProcess], base_url: str, ready_path: str) -> RunningProcess:
    port = free_port()
    return launch(  # type: ignore[no-any-return]
        "planner",
        replan_command("serve", "planner", "--backend", "openai", "--openai-base-url", base_url, "--port", str(port)),
        url=f"http://127.0.0.1:{port}",
        ready_path=ready_path,
        env=FAST_RETRIES,
    )


def plan(planner: RunningProcess, size: tuple[int, int]) -> httpx.Response:
    image = base64.b64encode(png_bytes(*size)).decode("ascii")
    return httpx.post(f"{planner.url}/v1/plan", json={"image": image, "instruction": "replace the cup"}, timeout=60)


def test_plan_through_a_stub_vllm(launch: Callable[..., RunningProcess]) -> None:
    with StubVLLM((200, recording("chat_completion_plan.json"))) as vllm:
        planner = serve(launch, vllm.base_url, "/readyz")  # ready only once GET /v1/models answered
        answer = plan(planner, (4000, 3000))
        assert answer.status_code == 200, answer.text
        body = PlanResponse.model_validate(answer.json())
        assert len(body.plan.regions) == 2 and len(body.adjustments) == 3
        data_uri: Any = vllm.chat_requests[0]["messages"][0]["content"][0]["image_url"]["url"]
        assert data_uri.startswith("data:image/png;base64,")
        sent = base64.b64decode(data_uri.split(",", 1)[1])
        assert sent[16:24] == (4004).to_bytes(4, "big") + (2996).to_bytes(4, "big")  # PNG IHDR: the model's view


def test_no_upstream_is_503_and_the_planner_stays_up(launch: Callable[..., RunningProcess]) -> None:
    planner = serve(launch, f"http://127.0.0.1:{free_port()}/v1", "/healthz")
    assert httpx.get(f"{planner.url}/readyz", timeout=10).status_code == 503
    answer = plan(planner, (300, 200))
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "planner_upstream_unavailable"
    assert planner.alive() and httpx.get(f"{planner.url}/healthz", timeout=10).status_code == 200
