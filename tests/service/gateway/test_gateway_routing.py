"""Balancing and failure handling of the planner and editor pools."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from replan_gateway.routing import WorkerHealth, WorkerPool


def _body(image: str) -> dict[str, object]:
    return {"image": image, "instruction": "add a hat"}


def test_calls_spread_over_idle_workers(stack, image_b64: str) -> None:
    for _ in range(20):
        assert stack.client.post("/v1/plan", json=_body(image_b64), headers=stack.auth()).status_code == 200
    counts = [len(w.calls) for w in stack.planners.values()]
    assert sum(counts) == 20 and min(counts) > 0


def test_least_outstanding_requests_wins(stack, image_b64: str) -> None:
    """Concurrent edits go to the editor with fewer in flight, so neither gets two while the other has none."""
    for editor in stack.editors.values():
        editor.delay_s = 0.3
    pool = stack.app.state.services.editors

    async def burst() -> None:
        body = {"image": image_b64, "instruction": "x"}
        await asyncio.gather(*(pool.request("POST", "/v1/edit", json=body) for _ in range(4)))

    asyncio.run(burst())
    assert [len(w.calls) for w in stack.editors.values()] == [2, 2]
    assert all(w.max_in_flight == 2 for w in stack.editors.values())


def test_an_unreachable_worker_is_skipped_and_the_call_retried_on_another(make_stack: Callable, image_b64: str) -> None:
    stack = make_stack(planner_urls=["http://planner-gone", "http://planner-a"])
    for _ in range(6):
        response = stack.client.post("/v1/plan", json=_body(image_b64), headers=stack.auth())
        assert response.status_code == 200, response.text
    assert len(stack.planners["planner-a"].calls) == 6
    status = {w.url: w for w in stack.app.state.services.planners.status()}
    assert status["http://planner-gone"].available is False
    assert status["http://planner-gone"].failures >= 1


def test_a_failing_worker_is_taken_out_then_tried_again_after_cooldown(make_stack: Callable, image_b64: str) -> None:
    stack = make_stack(routing={"health_interval_s": 3600, "cooldown_s": 0.5})
    stack.planners["planner-a"].fail_status = 500
    for _ in range(4):
        assert stack.client.post("/v1/plan", json=_body(image_b64), headers=stack.auth()).status_code == 200
    assert len(stack.planners["planner-a"].calls) == 1  # failed once, retried on b, then left alone
    assert len(stack.planners["planner-b"].calls) == 4
    stack.planners["planner-a"].fail_status = None
    import time

    time.sleep(0.6)
    for _ in range(6):
        stack.client.post("/v1/plan", json=_body(image_b64), headers=stack.auth())
    assert len(stack.planners["planner-a"].calls) > 1


def test_every_planner_down_is_503_planner_unavailable(make_stack: Callable, image_b64: str) -> None:
    stack = make_stack(planner_urls=["http://planner-gone", "http://planner-away"])
    response = stack.client.post("/v1/replan", json=_body(image_b64), headers=stack.auth())
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "planner_unavailable"
    assert "planner" in error["message"]
    assert int(response.headers["Retry-After"]) >= 1
    assert not any(w.calls for w in stack.editors.values())
    ready = stack.client.get("/readyz")
    assert ready.status_code == 503 and "no ready planner" in ready.json()["detail"]


def test_client_errors_are_not_retried_elsewhere(stack, image_b64: str) -> None:
    stack.planners["planner-a"].fail_status = 422
    stack.planners["planner-b"].fail_status = 422
    response = stack.client.post("/v1/plan", json=_body(image_b64), headers=stack.auth())
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "stub_failure"
    assert sum(len(w.calls) for w in stack.planners.values()) == 1


def test_health_checks_take_loading_workers_out_and_put_them_back(stack, image_b64: str) -> None:
    pool = stack.app.state.services.planners
    stack.planners["planner-a"].ready = False
    asyncio.run(pool.check_health())
    assert {w.url: w.health for w in pool.status()}["http://planner-a"] == WorkerHealth.NOT_READY.value
    for _ in range(4):
        stack.client.post("/v1/plan", json=_body(image_b64), headers=stack.auth())
    assert stack.planners["planner-a"].calls == []
    stack.planners["planner-a"].ready = True
    asyncio.run(pool.check_health())
    assert all(s.health == "ready" for s in pool.status())
    assert stack.client.get("/readyz").status_code == 200


def test_a_pool_needs_urls() -> None:
    with pytest.raises(ValueError, match="at least one URL"):
        WorkerPool("planner", [])


def test_edits_go_only_to_editors_serving_the_requested_backbone(stack, image_b64: str) -> None:
    """editor-b restarts serving Qwen-Image-Edit; the pool relearns its backbone when it is ready again."""
    pool = stack.app.state.services.editors
    stack.editors["editor-b"].ready = False
    asyncio.run(pool.check_health())
    stack.editors["editor-b"].backbone = "qwen-image-edit"
    stack.editors["editor-b"].ready = True
    asyncio.run(pool.check_health())
    assert {w.url: w.backbone for w in pool.workers} == {
        "http://editor-a": "flux-kontext",
        "http://editor-b": "qwen-image-edit",
    }
    for backbone, editor in (("qwen-image-edit", "editor-b"), ("flux-kontext", "editor-a")):
        before = {name: len(w.calls) for name, w in stack.editors.items()}
        for _ in range(4):
            body = {"image": image_b64, "instruction": "x", "settings": {"backbone": backbone}}
            assert stack.client.post("/v1/edit", json=body, headers=stack.auth()).status_code == 200
        grown = {name: len(w.calls) - before[name] for name, w in stack.editors.items()}
        assert grown[editor] == 4 and sum(grown.values()) == 4


def test_a_backbone_no_editor_serves_is_a_clear_503(stack, image_b64: str) -> None:
    pool = stack.app.state.services.editors
    asyncio.run(pool.check_health())
    body = {"image": image_b64, "instruction": "x", "settings": {"backbone": "qwen-image-edit"}}
    response = stack.client.post("/v1/edit", json=body, headers=stack.auth())
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "backbone_unavailable"
    assert "flux-kontext" in error["message"]
    assert not any(w.calls for w in stack.editors.values())
