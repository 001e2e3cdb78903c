"""The shared HTTP plumbing: one error envelope, request ids, body limits, metrics, and service clients."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fastapi import APIRouter, HTTPException
from pydantic import BaseModel

from replan_common.context import REQUEST_ID_HEADER, get_request_id, set_request_id
from replan_common.errors import (
    InvalidRegion,
    QueueFull,
    ServiceUnavailable,
    Unprocessable,
    UpstreamError,
    UpstreamTimeout,
)
from replan_common.http.app_factory import build_service_app
from replan_common.http.client import AsyncServiceClient, RetryPolicy, ServiceClient
from replan_common.http.health import Readiness, ReadyState
from replan_common.metrics import ServiceMetrics

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.0)


class Body(BaseModel):
    name: str
    count: int


def make_app(ready: ReadyState = ReadyState.READY, max_body_bytes: int = 4096):
    metrics = ServiceMetrics("test")

    async def readiness() -> Readiness:
        return Readiness(status=ready, detail="probe says so")

    app = build_service_app(
        service="test",
        title="t",
        description="d",
        metrics=metrics,
        readiness=readiness,
        max_body_bytes=max_body_bytes,
    )
    router = APIRouter()

    @router.get("/region")
    async def region() -> dict[str, str]:
        raise InvalidRegion("box lies outside", code="bbox_outside_image", param="regions[2].bbox")

    @router.get("/busy")
    async def busy() -> dict[str, str]:
        raise QueueFull("queue is full", retry_after_s=2.5)

    @router.get("/missing")
    async def missing() -> dict[str, str]:
        raise HTTPException(404, "no such thing")

    @router.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret internals")

    @router.get("/rid")
    async def rid() -> dict[str, str | None]:
        return {"request_id": get_request_id()}

    @router.post("/body")
    async def body(payload: Body) -> Body:
        return payload

    app.include_router(router)
    return app


def client_for(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t")


async def _get(app, path: str, **kwargs) -> httpx.Response:
    async with client_for(app) as client:
        return await client.get(path, **kwargs)


def test_typed_error_becomes_envelope_with_code_param_and_request_id() -> None:
    response = asyncio.run(_get(make_app(), "/region", headers={REQUEST_ID_HEADER: "abc123"}))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "bbox_outside_image"
    assert error["param"] == "regions[2].bbox"
    assert error["request_id"] == "abc123"
    assert response.headers[REQUEST_ID_HEADER] == "abc123"


def test_retry_after_is_rounded_up_to_whole_seconds() -> None:
    response = asyncio.run(_get(make_app(), "/busy"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["code"] == "queue_full"


def test_http_exception_and_unknown_route_use_the_envelope() -> None:
    app = make_app()
    assert asyncio.run(_get(app, "/missing")).json()["error"]["code"] == "not_found"
    assert asyncio.run(_get(app, "/nope")).json()["error"]["message"] == "Not Found"


def test_unexpected_exception_is_500_without_internals() -> None:
    response = asyncio.run(_get(make_app(), "/boom"))
    assert response.status_code == 500
    assert "secret" not in response.text
    assert response.json()["error"]["code"] == "internal_error"


def test_validation_error_names_the_field() -> None:
    async def go() -> httpx.Response:
        async with client_for(make_app()) as client:
            return await client.post("/body", json={"name": "x", "count": "many"})

    response = asyncio.run(go())
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "count"
    assert response.json()["error"]["code"] == "validation_error"


def test_request_id_is_generated_when_absent_and_visible_to_handlers() -> None:
    response = asyncio.run(_get(make_app(), "/rid"))
    generated = response.headers[REQUEST_ID_HEADER]
    assert len(generated) == 32
    assert response.json()["request_id"] == generated


def test_declared_oversized_body_is_413_before_reading() -> None:
    async def go() -> httpx.Response:
        async with client_for(make_app(max_body_bytes=1024)) as client:
            return await client.post("/body", content=b"x" * 5000, headers={"content-type": "application/json"})

    response = asyncio.run(go())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_streamed_oversized_body_is_413() -> None:
    async def chunks():
        for _ in range(10):
            yield b"x" * 500

    async def go() -> httpx.Response:
        async with client_for(make_app(max_body_bytes=1024)) as client:
            return await client.post("/body", content=chunks(), headers={"content-type": "application/json"})

    response = asyncio.run(go())
    assert response.status_code == 413


def test_readyz_follows_the_probe_and_metrics_count_requests() -> None:
    loading = make_app(ready=ReadyState.LOADING)
    response = asyncio.run(_get(loading, "/readyz"))
    assert response.status_code == 503
    assert response.json()["status"] == "loading"
    ready = make_app()
    assert asyncio.run(_get(ready, "/readyz")).status_code == 200
    asyncio.run(_get(ready, "/region"))
    metrics = asyncio.run(_get(ready, "/metrics")).text
    assert 'replan_http_requests_total{method="GET",route="/region",service="test",status="422"} 1.0' in metrics


class Script:
    """An upstream that answers a scripted sequence of responses (the peer is not one of our services)."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def envelope(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": f"m {code}", "type": "t", "code": code, "param": "p"}})


def test_client_retries_5xx_then_succeeds_and_forwards_request_id() -> None:
    script = Script(envelope(500, "boom"), httpx.Response(200, json={"ok": True}))
    client = ServiceClient("http://up", service="planner", retry=FAST_RETRY, transport=httpx.MockTransport(script))
    token = set_request_id("rid-1")
    try:
        assert client.request("POST", "/v1/plan", json={}).json() == {"ok": True}
    finally:
        from replan_common.context import reset_request_id

        reset_request_id(token)
    assert len(script.requests) == 2
    assert script.requests[0].headers[REQUEST_ID_HEADER] == "rid-1"


def test_client_does_not_retry_4xx_and_keeps_upstream_code() -> None:
    script = Script(envelope(422, "degenerate_bbox"))
    client = ServiceClient("http://up", service="editor", retry=FAST_RETRY, transport=httpx.MockTransport(script))
    with pytest.raises(Unprocessable) as caught:
        client.request("POST", "/v1/edit", json={})
    assert caught.value.code == "degenerate_bbox"
    assert caught.value.param == "p"
    assert len(script.requests) == 1


def test_client_maps_connection_errors_and_timeouts() -> None:
    refused = Script(*[httpx.ConnectError("refused")] * 3)
    client = ServiceClient("http://up", service="planner", retry=FAST_RETRY, transport=httpx.MockTransport(refused))
    with pytest.raises(ServiceUnavailable) as caught:
        client.request("GET", "/x")
    assert caught.value.code == "planner_unavailable"
    assert len(refused.requests) == 3

    slow = Script(httpx.ReadTimeout("slow"))
    client = ServiceClient(
        "http://up", service="editor", retry=RetryPolicy(attempts=1), transport=httpx.MockTransport(slow)
    )
    with pytest.raises(UpstreamTimeout):
        client.request("GET", "/x")


def test_non_idempotent_call_is_sent_once() -> None:
    script = Script(envelope(503, "busy"))
    client = ServiceClient("http://up", service="editor", retry=FAST_RETRY, transport=httpx.MockTransport(script))
    with pytest.raises(ServiceUnavailable):
        client.request("POST", "/v1/edit", idempotent=False)
    assert len(script.requests) == 1


def test_async_client_reports_upstream_without_envelope() -> None:
    script = Script(*[httpx.Response(502, text="<html>bad gateway</html>")] * 3)

    async def go() -> None:
        client = AsyncServiceClient(
            "http://up", service="planner", retry=FAST_RETRY, transport=httpx.MockTransport(script)
        )
        try:
            await client.request("GET", "/x")
        finally:
            await client.aclose()

    with pytest.raises(UpstreamError) as caught:
        asyncio.run(go())
    assert "without an error envelope" in caught.value.message
    assert len(script.requests) == 3


def test_post_model_reads_the_reply_model_and_blames_the_upstream_for_a_bad_body() -> None:
    from replan_common.plan import RegionPlan
    from replan_common.protocol import PlanRequest, PlanResponse

    good = PlanResponse(plan=RegionPlan(global_prompt="blue"), raw_text="t", model="m")
    script = Script(
        httpx.Response(200, content=good.model_dump_json()),
        httpx.Response(200, json={"plan": "not a plan"}),
    )
    client = ServiceClient("http://up", service="planner", retry=FAST_RETRY, transport=httpx.MockTransport(script))
    request = PlanRequest(image="aGk=", instruction="make it blue")
    assert client.post_model("/v1/plan", request, PlanResponse) == good
    assert "options" in json.loads(script.requests[0].content)
    with pytest.raises(UpstreamError) as caught:
        client.post_model("/v1/plan", request, PlanResponse)
    assert (caught.value.status, caught.value.code) == (502, "planner_bad_reply")
    assert "PlanResponse" in caught.value.message
