"""A Celery worker killed with SIGKILL in the middle of a job loses nothing: once a new worker runs, the job
is redelivered (task_acks_late, Redis visibility timeout), resumes where it was (the plan is not made again)
and finishes exactly once."""

from __future__ import annotations

import json
import signal
import time

import pytest
import redis

from replan_common.jobs.sse import parse_sse
from tests.integration.gateway.conftest import Stack, png_b64

pytestmark = pytest.mark.integration

STEPS = 60


def _events(client, url: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    return [json.loads(m.data) for m in parse_sse(client.get(url).text.splitlines())]


def _wait_for_editor_step(pubsub: redis.client.PubSub, job_id: str, *, deadline_s: float) -> list[dict[str, object]]:
    """The editor's progress events for `job_id` up to its first denoising step (read straight from Redis, so
    the kill lands while the editor is still working)."""
    seen: list[dict[str, object]] = []
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message is None or message["type"] != "pmessage" or not message["channel"].decode().endswith(job_id):
            continue
        event = json.loads(message["data"])
        seen.append(event)
        if event["stage"] == "step":
            return seen
    raise AssertionError(f"the editor did not start job {job_id}")


def test_a_job_survives_kill_9_of_its_worker_and_finishes_exactly_once(stack: Stack) -> None:
    # The editor publishes every progress event of every edit on replan:progress:<job id>; listen to all.
    editor_events = redis.Redis.from_url(f"{stack.redis_url}/5").pubsub()
    editor_events.psubscribe("replan:progress:*")
    victim = stack.workers[-1]
    with stack.client() as client:
        job = client.post(
            "/v1/jobs", json={"image": png_b64(), "instruction": "paint the door red", "settings": {"steps": STEPS}}
        ).json()
        published = _wait_for_editor_step(editor_events, job["id"], deadline_s=60)
        victim.kill(signal.SIGKILL)  # the worker is in the middle of the edit: the editor just did step 1
        assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "editing"

        stack.start_worker()
        deadline = time.monotonic() + 150  # visibility timeout (60 s) + the edit
        while (record := client.get(f"/v1/jobs/{job['id']}").json())["status"] not in ("done", "error"):
            assert time.monotonic() < deadline, f"job still {record['status']}:\n{stack.workers[-1].log()[-3000:]}"
            time.sleep(0.5)
        assert record["status"] == "done", record["error"]
        assert record["attempts"] == 2
        events = _events(client, job["events_url"])

    stages = [e["stage"] for e in events]
    assert stages.count("done") == 1
    assert stages.count("planning") == 1, "the plan was made again"
    assert any("attempt 2" in str(e.get("message")) for e in events)
    finished_loops = [e for e in events if e["stage"] == "step" and e["step"] == e["total"] == STEPS]
    assert len(finished_loops) == 1

    # The editor's own account for this job id: the first edit was stopped when its client died, and exactly
    # one edit ran all its steps.
    while (message := editor_events.get_message(timeout=0.5)) is not None:
        if message["type"] == "pmessage" and message["channel"].decode().endswith(job["id"]):
            published.append(json.loads(message["data"]))
    editor_steps = [e for e in published if e["stage"] == "step"]
    assert editor_steps, "the editor published no progress for the job"
    assert sum(1 for e in editor_steps if e["step"] == e["total"]) == 1
    assert stack.editor.log().count(f"job {job['id']} cancelled while running") == 1
    editor_events.close()
