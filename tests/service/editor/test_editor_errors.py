"""Bad input, a full queue, abandoned requests and a failed model load, against real editor processes:
every failure is a 4xx/5xx in the one envelope with a code, and the worker serves the next request."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from editor_support import STEPS, metric, png_b64, wait_for

from tests.support.processes import free_port, replan_command, start_process

PLAN = {"global_prompt": "keep", "regions": [{"bbox": [4, 4, 30, 28], "hint": "a plant"}]}


def assert_alive(url: str) -> None:
    response = httpx.post(
        f"{url}/v1/edit", json={"image": png_b64(), "plan": PLAN, "settings": {"steps": STEPS}}, timeout=60
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({"image": "bm90IGFuIGltYWdl", "instruction": "x"}, 400, "invalid_image", "image"),
        ({"image": "%%%not base64%%%", "instruction": "x"}, 400, "invalid_base64", "image"),
        (
            {"plan": {"global_prompt": "g", "regions": [{"bbox": [100, 100, 200, 200], "hint": "h"}]}},
            422,
            "bbox_outside_image",
            "regions[0].bbox",
        ),
        ({"plan": PLAN, "settings": {"custom_rules": {"X.B9|N.B1": False}}}, 400, "unknown_rule_label", None),
        ({"instruction": "x", "settings": {"steps": 0}}, 422, "validation_error", "settings.steps"),
        ({"instruction": "x", "settings": {"steps": 1_000_000}}, 422, "validation_error", "settings.steps"),
        ({"plan_text": "<gen_image>g</gen_image><region>[{]</region>"}, 422, "invalid_json", None),
        ({"instruction": "x", "plan": PLAN}, 422, "validation_error", "body"),
        ({"instruction": "x", "settings": {"backbone": "qwen-image-edit"}}, 400, "backbone_mismatch", None),
    ],
    ids=[
        "corrupt-image",
        "bad-base64",
        "box-outside",
        "unknown-rule",
        "steps-0",
        "steps-1e6",
        "bad-plan-json",
        "two-sources",
        "wrong-backbone",
    ],
)
def test_bad_edit_input_is_a_4xx_with_a_code(
    flux_url: str, body: dict[str, object], status: int, code: str, param: str | None
) -> None:
    response = httpx.post(f"{flux_url}/v1/edit", json={"image": png_b64(), **body}, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert error["request_id"] == response.headers["x-request-id"]
    assert_alive(flux_url)


def test_bad_reward_input_is_a_4xx_and_the_worker_stays_alive(flux_url: str) -> None:
    url = f"{flux_url}/v1/images/generations"
    good = '<think>t</think><gen_image>g</gen_image><region>[{"bbox_2d": [4, 4, 30, 28], "hint": "h"}]</region>'
    bad_image = httpx.post(url, json={"image_base64": "***", "instruction": "x", "response": good}, timeout=60)
    assert bad_image.status_code == 400 and bad_image.json()["error"]["param"] == "image_base64"
    bad_rules = httpx.post(
        url,
        json={"image_base64": png_b64(), "instruction": "x", "response": good, "attention_rules": {"Nope": True}},
        timeout=60,
    )
    assert bad_rules.status_code == 400, bad_rules.text
    unparsable = httpx.post(
        url, json={"image_base64": png_b64(), "instruction": "x", "response": "no tags"}, timeout=60
    )
    assert unparsable.status_code == 422 and unparsable.json()["error"]["param"].startswith("response")
    assert_alive(flux_url)


def test_unacceptable_accept_header_is_a_406(flux_url: str) -> None:
    response = httpx.post(
        f"{flux_url}/v1/edit",
        json={"image": png_b64(), "instruction": "x"},
        headers={"Accept": "image/jpeg"},
        timeout=60,
    )
    assert response.status_code == 406 and response.json()["error"]["code"] == "not_acceptable"


class AbandonedRequest:
    """An edit sent over a raw socket, so the test can hang up on it like a client that went away."""

    def __init__(self, url: str, body: dict[str, object]) -> None:
        parts = urlsplit(url)
        payload = json.dumps(body).encode()
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
        head = (
            f"POST /v1/edit HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + payload)

    def hang_up(self) -> None:
        self.sock.close()


@pytest.fixture
def abandoned() -> Iterator[list[AbandonedRequest]]:
    requests: list[AbandonedRequest] = []
    yield requests
    for request in requests:
        request.hang_up()


def test_full_queue_is_a_429_and_hung_up_requests_are_cancelled(
    flux_url: str, abandoned: list[AbandonedRequest]
) -> None:
    slow = {"image": png_b64(), "instruction": "x", "settings": {"steps": 200}}
    cancelled_before = metric(flux_url, "replan_editor_edits_total", '{outcome="cancelled"}')
    abandoned.append(AbandonedRequest(flux_url, slow))
    wait_for(lambda: metric(flux_url, "replan_editor_jobs_running") == 1, what="the slow edit to start")
    abandoned.append(AbandonedRequest(flux_url, slow))
    wait_for(lambda: metric(flux_url, "replan_editor_queue_depth") == 1, what="the second edit to queue")

    refused = httpx.post(f"{flux_url}/v1/edit", json=slow, timeout=60)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "queue_full"
    assert int(refused.headers["retry-after"]) >= 1
    refused_sse = httpx.post(f"{flux_url}/v1/edit", json=slow, headers={"Accept": "text/event-stream"}, timeout=60)
    assert refused_sse.status_code == 429  # refused before the stream starts, not as an event

    for request in abandoned:  # the queued one leaves the queue; the running one stops between steps
        request.hang_up()
    wait_for(
        lambda: metric(flux_url, "replan_editor_edits_total", '{outcome="cancelled"}') == cancelled_before + 2,
        what="both edits to be cancelled",
    )
    wait_for(lambda: metric(flux_url, "replan_editor_jobs_running") == 0, what="the device to be free")
    assert metric(flux_url, "replan_editor_queue_depth") == 0
    assert_alive(flux_url)


def test_a_failed_model_load_is_reported_by_readyz(tmp_path: Path) -> None:
    port = free_port()
    running = start_process(
        "editor-broken",
        replan_command(
            "serve", "editor", "--model", str(tmp_path / "no-such-checkpoint"), "--device", "cpu", "--port", str(port)
        ),
        log_dir=tmp_path,
        env={"REPLAN_EDITOR_LOCAL_FILES_ONLY": "true", "HF_HUB_OFFLINE": "1"},
        url=f"http://127.0.0.1:{port}",
        ready_path=None,
    )
    try:
        url = running.url
        readiness: dict[str, object] = {}

        def failed() -> bool:
            nonlocal readiness
            try:
                response = httpx.get(f"{url}/readyz", timeout=2)
            except httpx.TransportError:
                return False
            assert response.status_code == 503
            readiness = response.json()
            assert readiness["status"] in ("loading", "failed")
            return readiness["status"] == "failed"

        wait_for(failed, timeout_s=60, what="the load to fail")
        assert "no-such-checkpoint" in str(readiness["detail"])
        assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        refused = httpx.post(f"{url}/v1/edit", json={"image": png_b64(), "instruction": "x"}, timeout=10)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "model_load_failed"
        info = httpx.get(f"{url}/v1/info", timeout=2).json()
        assert info["status"] == "failed" and info["defaults"] is None
    finally:
        running.stop()
