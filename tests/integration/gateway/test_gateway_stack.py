"""The gateway in front of real planner, editor and Celery worker processes (tiny presets) and Redis."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
from PIL import Image

from replan_common.jobs.sse import parse_sse
from tests.integration.gateway.conftest import LIMITED_KEY, MAX_BODY_BYTES, Stack, png_b64, png_bytes

pytestmark = pytest.mark.integration


def _decode_png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    assert image.format == "PNG"
    return image


def test_sync_replan_plans_then_edits_and_carries_the_request_id(stack: Stack) -> None:
    request_id = "it-sync-replan-0001"
    with stack.client() as client:
        response = client.post(
            "/v1/replan",
            json={"image": png_b64(64, 48), "instruction": "replace the cup with a plant", "settings": {"steps": 2}},
            headers={"X-Request-ID": request_id},
        )
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-ID"] == request_id
    body = response.json()
    assert body["plan"]["model"]
    assert body["plan"]["raw_text"]
    assert _decode_png(body["image"]).size == (64, 48) == (body["width"], body["height"])
    assert body["settings"]["steps"] == 2
    # One id across the services: both upstreams logged it (their access line is written just after replying).
    for upstream in (stack.planner, stack.editor):
        deadline = time.monotonic() + 10
        while request_id not in upstream.log():
            assert time.monotonic() < deadline, f"{upstream.name} did not log the request id"
            time.sleep(0.1)


def test_async_job_streams_its_events_live_and_in_order(stack: Stack) -> None:
    with stack.client() as client:
        created = client.post(
            "/v1/jobs", json={"image": png_b64(), "instruction": "make the sky pink", "settings": {"steps": 3}}
        )
        assert created.status_code == 202, created.text
        job = created.json()
        assert job["status"] == "queued"
        live = []
        with client.stream("GET", job["events_url"]) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            for message in parse_sse(stream.iter_lines()):
                live.append(json.loads(message.data))
        stages = [(e["stage"], e.get("step")) for e in live]
        assert stages == [
            ("queued", None),
            ("planning", None),
            ("editing", None),
            ("step", 1),
            ("step", 2),
            ("step", 3),
            ("done", None),
        ], stages
        ids = [e["id"] for e in live]
        assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
        done = client.get(f"/v1/jobs/{job['id']}").json()
        assert done["status"] == "done" and done["attempts"] == 1
        assert _decode_png(done["result"]["image"]).size == (64, 48)
        # A late subscriber gets the same log replayed, and can resume after any id.
        replay = [json.loads(m.data) for m in parse_sse(client.get(job["events_url"]).text.splitlines())]
        assert [e["id"] for e in replay] == ids
        rest = client.get(job["events_url"], headers={"Last-Event-ID": ids[3]}).text
        assert [json.loads(m.data)["id"] for m in parse_sse(rest.splitlines())] == ids[4:]


def test_the_openai_sdk_edits_an_image(stack: Stack) -> None:
    import openai  # a dev dependency: a missing SDK fails the test instead of skipping it

    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="sk-integration-main", timeout=120, max_retries=0)
    result = client.images.edit(
        image=("photo.png", png_bytes(48, 40), "image/png"),
        prompt="put a red hat on the cat",
        n=2,
        response_format="b64_json",
    )
    assert len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None
        assert _decode_png(item.b64_json).size == (48, 40)
        assert item.revised_prompt is not None
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{stack.url}/v1", api_key="wrong", max_retries=0).images.edit(
            image=("photo.png", png_bytes(), "image/png"), prompt="x"
        )


def test_the_original_reward_payload_works_unchanged(stack: Stack) -> None:
    """What RePlan's remote_reward.py posts to KONTEXT_SERVER_URL, and the shape it reads back."""
    payload = {
        "image_base64": png_b64(64, 48),
        "instruction": "replace the cup with a small plant",
        "response": "<think>the cup is on the left</think><gen_image>keep remaining part of image unchanged."
        '</gen_image><region>[{"bbox_2d": [4, 6, 30, 40], "hint": "a small potted plant"}]</region>',
    }
    response = httpx.post(f"{stack.url}/v1/images/generations", json=payload, headers=stack.auth(), timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == 1 and _decode_png(data[0]["final_image_base64"]).size == (64, 48)


def test_missing_or_invalid_keys_are_401(stack: Stack) -> None:
    body = {"image": png_b64(), "instruction": "x"}
    missing = httpx.post(f"{stack.url}/v1/replan", json=body, timeout=30)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    invalid = httpx.post(f"{stack.url}/v1/replan", json=body, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert invalid.status_code == 401 and invalid.json()["error"]["code"] == "invalid_api_key"
    assert "nope" not in stack.gateway.log()


def test_over_the_limit_is_429_with_retry_after(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {LIMITED_KEY}"}
    # Cheap calls: the limit is counted before the body is read, so invalid bodies count too.
    statuses = [httpx.post(f"{stack.url}/v1/plan", json={}, headers=headers).status_code for _ in range(4)]
    assert statuses == [422, 422, 422, 429]
    limited = httpx.post(f"{stack.url}/v1/plan", json={}, headers=headers)
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0


def test_oversized_bodies_and_images_are_413(stack: Stack) -> None:
    big = httpx.post(
        f"{stack.url}/v1/replan",
        content=b'{"image": "' + b"A" * (MAX_BODY_BYTES + 10) + b'", "instruction": "x"}',
        headers={**stack.auth(), "Content-Type": "application/json"},
        timeout=30,
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    too_many_pixels = httpx.post(
        f"{stack.url}/v1/replan", json={"image": png_b64(1000, 800), "instruction": "x"}, headers=stack.auth()
    )
    assert too_many_pixels.status_code == 413
    assert too_many_pixels.json()["error"]["code"] == "too_many_pixels"


def test_jobs_and_results_survive_a_gateway_restart(stack: Stack) -> None:
    with stack.client() as client:
        job = client.post("/v1/jobs", json={"image": png_b64(), "instruction": "x", "settings": {"steps": 1}}).json()
        deadline = time.monotonic() + 60
        while client.get(f"/v1/jobs/{job['id']}").json()["status"] != "done":
            assert time.monotonic() < deadline, "job did not finish"
            time.sleep(0.2)
    stack.gateway.stop()
    stack.gateway = stack.start_gateway("gateway-restarted")
    with stack.client() as client:
        again = client.get(f"/v1/jobs/{job['id']}").json()
    assert again["status"] == "done" and again["result"]["width"] == 64


def test_info_reports_the_stack(stack: Stack) -> None:
    info = httpx.get(f"{stack.url}/v1/info", headers=stack.auth()).json()
    assert info["backbones"] == ["flux-kontext"]
    assert info["jobs_executor"] == "celery"
    assert [w["health"] for w in info["pools"]["planner"]] == ["ready"]
    metrics = httpx.get(f"{stack.url}/metrics").text
    assert "replan_gateway_upstream_calls_total" in metrics


def test_cancelling_a_running_job_stops_the_edit(stack: Stack) -> None:
    with stack.client() as client:
        job = client.post("/v1/jobs", json={"image": png_b64(), "instruction": "x", "settings": {"steps": 200}}).json()
        with client.stream("GET", job["events_url"]) as stream:
            for message in parse_sse(stream.iter_lines()):
                if message.event == "step":
                    break
        cancelled = client.delete(f"/v1/jobs/{job['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        events = [json.loads(m.data) for m in parse_sse(client.get(job["events_url"]).text.splitlines())]
        assert events[-1]["stage"] == "cancelled"
        assert client.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
    deadline = time.monotonic() + 30  # the worker sees the cancel at the next step and drops the stream
    while f"job {job['id']} cancelled while running" not in stack.editor.log():
        assert time.monotonic() < deadline, "the editor kept editing a cancelled job"
        time.sleep(0.2)
    record = httpx.get(f"{stack.url}/v1/jobs/{job['id']}", headers=stack.auth()).json()
    assert record["status"] == "cancelled" and record["result"] is None


def test_a_worker_can_requeue_jobs_its_broker_lost(stack: Stack) -> None:
    """`serve worker --requeue-active-jobs` (what `replan up` runs) picks up jobs that no message carries."""
    from replan_common.jobs import JobKind, JobRecord, JobSpec, new_job_id
    from replan_common.jobs.redis_store import RedisJobStore

    store = RedisJobStore(stack.env["REPLAN_JOBS_STORE_URL"])
    spec = JobSpec(kind=JobKind.EDIT, image=png_b64(), instruction="x", settings={"steps": 1})
    orphan = store.create(JobRecord(id=new_job_id(), kind=JobKind.EDIT, spec=spec, owner="main"))
    worker = stack.start_worker(extra_args=["--requeue-active-jobs"])
    try:
        deadline = time.monotonic() + 60
        while (status := store.require(orphan.id).status.value) != "done":
            assert status in ("queued", "editing") and time.monotonic() < deadline, status
            time.sleep(0.2)
    finally:
        worker.stop()
        stack.workers.remove(worker)
        store.close()
