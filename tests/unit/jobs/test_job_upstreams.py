"""The worker-side HTTP upstreams: which editor gets a job's edit when editors differ or are busy.

The editors here are scripted HTTP peers speaking the editor's wire format (error envelope, SSE events);
the real editor process is exercised end to end in tests/integration.
"""

from __future__ import annotations

import json

import httpx
import pytest

from replan_common.errors import ReplanError, Unprocessable
from replan_common.jobs.upstream import HttpJobUpstreams
from replan_common.plan import RegionPlan
from replan_common.protocol import EditRequest, EditResponse, EditSettings, ProgressEvent, ProgressStage

PLAN = RegionPlan(global_prompt="make it blue")


def _envelope(status: int, code: str) -> httpx.Response:
    body = {"error": {"message": f"editor says {code}", "type": "invalid_request_error", "code": code}}
    return httpx.Response(status, json=body)


def _stream(job_id: str) -> httpx.Response:
    events = [
        ("progress", ProgressEvent(job_id=job_id, stage=ProgressStage.STEP, step=1, total=1).model_dump_json()),
        (
            "result",
            EditResponse(image="aW1n", width=8, height=8, plan=PLAN, settings=EditSettings(steps=1)).model_dump_json(),
        ),
    ]
    text = "".join(f"event: {name}\ndata: {data}\n\n" for name, data in events)
    return httpx.Response(200, text=text, headers={"Content-Type": "text/event-stream"})


class Editors:
    """Per-host scripted answers; records which host got each call."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.host)
        answer = self.answers[request.url.host]
        if answer == "ok":
            return _stream(request.headers["X-Replan-Job-Id"])
        status = 429 if answer == "queue_full" else 400 if answer == "backbone_mismatch" else 422
        return _envelope(status, answer)


def _upstreams(editors: Editors) -> HttpJobUpstreams:
    return HttpJobUpstreams(
        planner_urls=["http://planner"],
        editor_urls=[f"http://{host}" for host in editors.answers],
        transport=httpx.MockTransport(editors),
    )


def _edit(upstreams: HttpJobUpstreams) -> tuple[EditResponse, list[ProgressEvent]]:
    seen: list[ProgressEvent] = []
    request = EditRequest(image="aW1n", plan=PLAN)
    return upstreams.edit(request, job_id="job-1", on_progress=seen.append), seen


@pytest.mark.parametrize("refusal", ["backbone_mismatch", "queue_full"])
def test_an_editor_of_another_backbone_or_with_a_full_queue_passes_the_edit_on(refusal: str) -> None:
    for _ in range(6):  # the order is random: every order must end on the editor that can do it
        editors = Editors({"editor-a": refusal, "editor-b": "ok"})
        result, progress = _edit(_upstreams(editors))
        assert result.plan == PLAN
        assert [event.step for event in progress] == [1]
        assert editors.calls[-1] == "editor-b"


def test_when_every_editor_refuses_the_last_refusal_is_raised_naming_who_was_tried() -> None:
    editors = Editors({"editor-a": "queue_full", "editor-b": "queue_full"})
    with pytest.raises(ReplanError) as caught:
        _edit(_upstreams(editors))
    assert (caught.value.status, caught.value.code) == (429, "queue_full")
    assert sorted(editors.calls) == ["editor-a", "editor-b"]
    assert "editor-a" in caught.value.message and "editor-b" in caught.value.message


def test_a_bad_request_is_not_retried_elsewhere() -> None:
    editors = Editors({"editor-a": "degenerate_bbox", "editor-b": "degenerate_bbox"})
    with pytest.raises(Unprocessable) as caught:
        _edit(_upstreams(editors))
    assert caught.value.code == "degenerate_bbox"
    assert len(editors.calls) == 1
    assert json.dumps(caught.value.to_envelope())  # still a well-formed envelope
