"""Async job routes: create, read, cancel, and the SSE event log (replay, Last-Event-ID, ownership).

Jobs are run here by calling the shared runner with stand-in upstreams; the Celery path runs end to end
in tests/integration/gateway.
"""

from __future__ import annotations

import json

import pytest

from replan_common.errors import PlanParseError, ServiceUnavailable
from replan_common.jobs.models import JobStatus
from replan_common.jobs.runner import ProgressCallback, run_job
from replan_common.jobs.sse import parse_sse
from replan_common.plan import Region, RegionPlan
from replan_common.protocol import (
    EditRequest,
    EditResponse,
    PlanRequest,
    PlanResponse,
    ProgressEvent,
    ProgressStage,
)


class StubUpstreams:
    def __init__(self, *, plan_error: Exception | None = None, steps: int = 3) -> None:
        self.plan_error = plan_error
        self.steps = steps
        self.plans = 0
        self.edits: list[EditRequest] = []

    def plan(self, request: PlanRequest, *, job_id: str) -> PlanResponse:
        self.plans += 1
        if self.plan_error is not None:
            raise self.plan_error
        plan = RegionPlan(global_prompt=request.instruction, regions=(Region(bbox=(0, 0, 4, 4), hint="h"),))
        return PlanResponse(plan=plan, raw_text="raw", model="stub")

    def edit(self, request: EditRequest, *, job_id: str, on_progress: ProgressCallback) -> EditResponse:
        self.edits.append(request)
        for step in range(1, self.steps + 1):
            on_progress(ProgressEvent(job_id=job_id, stage=ProgressStage.STEP, step=step, total=self.steps))
        plan = request.plan or RegionPlan(global_prompt="g")
        return EditResponse(image=request.image, width=32, height=24, plan=plan, settings=request.settings)


def _events(stack, job_id: str, **headers: str) -> list[dict[str, object]]:
    response = stack.client.get(f"/v1/jobs/{job_id}/events", headers={**stack.auth(), **headers})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    out = []
    for message in parse_sse(response.text.splitlines()):
        data = json.loads(message.data)
        assert message.event == data["stage"] and message.id == data["id"]
        out.append(data)
    return out


def _create(stack, image: str, **fields: object) -> dict[str, object]:
    response = stack.client.post(
        "/v1/jobs", json={"image": image, "instruction": "add a hat", **fields}, headers=stack.auth()
    )
    assert response.status_code == 202, response.text
    return response.json()


def test_a_job_is_queued_run_and_read_back_with_its_result(stack, image_b64: str) -> None:
    job = _create(stack, image_b64, settings={"seed": 3})
    assert job["status"] == "queued" and job["kind"] == "replan"
    assert job["events_url"] == f"/v1/jobs/{job['id']}/events"
    assert stack.queue.ids == [job["id"]]
    assert 'replan_gateway_jobs_created_total{kind="replan"} 1.0' in stack.client.get("/metrics").text
    upstreams = StubUpstreams()
    run_job(job["id"], store=stack.app.state.services.store, upstreams=upstreams)
    done = stack.client.get(f"/v1/jobs/{job['id']}", headers=stack.auth()).json()
    assert done["status"] == "done" and done["attempts"] == 1
    assert done["plan"]["plan"]["global_prompt"] == "add a hat"
    assert done["result"]["image"] == image_b64 and done["result"]["settings"]["seed"] == 3
    assert upstreams.edits[0].plan is not None and upstreams.edits[0].plan.regions[0].hint == "h"


def test_events_replay_in_order_and_resume_after_last_event_id(stack, image_b64: str) -> None:
    job = _create(stack, image_b64)
    run_job(job["id"], store=stack.app.state.services.store, upstreams=StubUpstreams(steps=3))
    events = _events(stack, job["id"])
    assert [(e["stage"], e.get("step")) for e in events] == [
        ("queued", None),
        ("planning", None),
        ("editing", None),
        ("step", 1),
        ("step", 2),
        ("step", 3),
        ("done", None),
    ]
    assert events[3]["total"] == 3
    later = _events(stack, job["id"], **{"Last-Event-ID": str(events[2]["id"])})
    assert [e["id"] for e in later] == [e["id"] for e in events[3:]]
    assert _events(stack, job["id"], **{"Last-Event-ID": str(events[-1]["id"])}) == []
    bad = stack.client.get(f"/v1/jobs/{job['id']}/events", headers={**stack.auth(), "Last-Event-ID": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_event_id"


def test_an_edit_job_skips_planning(stack, image_b64: str) -> None:
    plan = {"global_prompt": "g", "regions": [{"bbox": [1, 1, 3, 3], "hint": "h"}]}
    job = _create(stack, image_b64, kind="edit", instruction=None, plan=plan)
    upstreams = StubUpstreams(steps=1)
    run_job(job["id"], store=stack.app.state.services.store, upstreams=upstreams)
    assert upstreams.plans == 0
    assert [e["stage"] for e in _events(stack, job["id"])] == ["queued", "editing", "step", "done"]


def test_bad_job_specs_are_422(stack, image_b64: str) -> None:
    for fields in ({"kind": "replan", "instruction": None}, {"kind": "replan", "plan_text": "x"}, {"kind": "nope"}):
        response = stack.client.post("/v1/jobs", json={"image": image_b64, **fields}, headers=stack.auth())
        assert response.status_code == 422, fields


def test_jobs_belong_to_the_key_that_created_them(stack, image_b64: str) -> None:
    job = _create(stack, image_b64)
    other = stack.auth("sk-test-other")
    for method, path in [("GET", ""), ("GET", "/events"), ("DELETE", "")]:
        response = stack.client.request(method, f"/v1/jobs/{job['id']}{path}", headers=other)
        assert response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"
    assert stack.client.get("/v1/jobs/job_unknown", headers=stack.auth()).status_code == 404


def test_cancelling_a_queued_job_stops_it_before_any_work(stack, image_b64: str) -> None:
    job = _create(stack, image_b64)
    cancelled = stack.client.delete(f"/v1/jobs/{job['id']}", headers=stack.auth())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    upstreams = StubUpstreams()
    run_job(job["id"], store=stack.app.state.services.store, upstreams=upstreams)
    assert upstreams.plans == 0 and upstreams.edits == []
    assert [e["stage"] for e in _events(stack, job["id"])] == ["queued", "cancelled"]
    again = stack.client.delete(f"/v1/jobs/{job['id']}", headers=stack.auth())
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancelling_a_finished_job_is_409(stack, image_b64: str) -> None:
    job = _create(stack, image_b64)
    run_job(job["id"], store=stack.app.state.services.store, upstreams=StubUpstreams())
    response = stack.client.delete(f"/v1/jobs/{job['id']}", headers=stack.auth())
    assert response.status_code == 409 and response.json()["error"]["code"] == "job_already_finished"


def test_an_upstream_refusal_fails_the_job_with_its_code(stack, image_b64: str) -> None:
    job = _create(stack, image_b64)
    error = PlanParseError("no <region> block", code="missing_region_block")
    run_job(job["id"], store=stack.app.state.services.store, upstreams=StubUpstreams(plan_error=error))
    failed = stack.client.get(f"/v1/jobs/{job['id']}", headers=stack.auth()).json()
    assert failed["status"] == "error" and failed["error"]["code"] == "missing_region_block"
    last = _events(stack, job["id"])[-1]
    assert last["stage"] == "error" and last["error_code"] == "missing_region_block"


def test_a_transient_outage_keeps_the_job_active_for_a_retry(stack, image_b64: str) -> None:
    job = _create(stack, image_b64)
    store = stack.app.state.services.store
    down = ServiceUnavailable("planner at x is unreachable", code="planner_unavailable")
    with pytest.raises(ServiceUnavailable):
        run_job(job["id"], store=store, upstreams=StubUpstreams(plan_error=down), final_attempt=False)
    assert store.require(job["id"]).status.value == "planning"
    run_job(job["id"], store=store, upstreams=StubUpstreams())
    record = store.require(job["id"])
    assert record.status.value == "done" and record.attempts == 2
    messages = [e.get("message") or "" for e in _events(stack, job["id"])]
    assert any("will retry" in m for m in messages) and any("attempt 2" in m for m in messages)


def test_a_finished_job_is_never_run_again(stack, image_b64: str) -> None:
    job = _create(stack, image_b64)
    store = stack.app.state.services.store
    first = StubUpstreams()
    run_job(job["id"], store=store, upstreams=first)
    second = StubUpstreams()
    run_job(job["id"], store=store, upstreams=second)
    assert (second.plans, second.edits) == (0, [])
    assert [e["stage"] for e in _events(stack, job["id"])].count("done") == 1


def test_an_inline_queue_resumes_the_jobs_a_previous_process_left_unfinished(stack, image_b64: str) -> None:
    import time

    from replan_gateway.jobs import InlineJobQueue

    store = stack.app.state.services.store
    left = [_create(stack, image_b64)["id"] for _ in range(2)]
    store.transition(left[0], JobStatus.PLANNING)
    queue = InlineJobQueue(store, StubUpstreams(steps=1))
    try:
        assert queue.recover() == left
        deadline = time.monotonic() + 10
        while any(store.require(job_id).status.value != "done" for job_id in left):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        queue.close()
    assert store.active_job_ids() == []
