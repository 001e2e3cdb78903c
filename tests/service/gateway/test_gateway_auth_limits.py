"""The door: API keys (401), per-key rate limits (429 + Retry-After), body and pixel limits (413), URL images."""

from __future__ import annotations

from collections.abc import Callable


def _plan_body(image: str) -> dict[str, object]:
    return {"image": image, "instruction": "make it blue"}


def test_missing_key_is_401_with_a_clear_code(stack, image_b64: str) -> None:
    response = stack.client.post("/v1/plan", json=_plan_body(image_b64))
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "missing_api_key"
    assert error["type"] == "authentication_error"
    assert error["request_id"] == response.headers["X-Request-ID"]
    assert stack.planners["planner-a"].calls == [] and stack.planners["planner-b"].calls == []


def test_invalid_and_malformed_keys_are_401(stack, image_b64: str) -> None:
    bad = stack.client.post("/v1/plan", json=_plan_body(image_b64), headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    assert "nope" not in bad.text
    basic = stack.client.post("/v1/plan", json=_plan_body(image_b64), headers={"Authorization": "Basic abc"})
    assert basic.status_code == 401 and basic.json()["error"]["code"] == "invalid_authorization_header"


def test_every_v1_route_needs_a_key_but_health_does_not(stack) -> None:
    for method, path in [
        ("POST", "/v1/edit"),
        ("POST", "/v1/replan"),
        ("POST", "/v1/jobs"),
        ("GET", "/v1/jobs/job_x"),
        ("GET", "/v1/jobs/job_x/events"),
        ("DELETE", "/v1/jobs/job_x"),
        ("POST", "/v1/images/generations"),
        ("GET", "/v1/info"),
    ]:
        assert stack.client.request(method, path, json={}).status_code == 401, path
    assert stack.client.get("/healthz").status_code == 200
    assert stack.client.get("/metrics").status_code == 200


def test_a_valid_key_passes(stack, image_b64: str) -> None:
    response = stack.client.post("/v1/plan", json=_plan_body(image_b64), headers=stack.auth())
    assert response.status_code == 200, response.text
    assert response.json()["plan"]["global_prompt"] == "make it blue"


def test_over_the_key_limit_is_429_with_retry_after(stack, image_b64: str) -> None:
    headers = stack.auth("sk-test-limited")  # 3 requests per window
    statuses = [
        stack.client.post("/v1/plan", json=_plan_body(image_b64), headers=headers).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    limited = stack.client.post("/v1/plan", json=_plan_body(image_b64), headers=headers)
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 3600
    # Other keys have their own window; reading jobs does not count.
    assert stack.client.post("/v1/plan", json=_plan_body(image_b64), headers=stack.auth()).status_code == 200
    assert stack.client.get("/v1/jobs/job_missing", headers=headers).status_code == 404


def test_disabled_auth_lets_anyone_in(make_stack: Callable, image_b64: str) -> None:
    open_stack = make_stack(auth_disabled=True)
    assert open_stack.client.post("/v1/plan", json=_plan_body(image_b64)).status_code == 200
    assert open_stack.client.get("/v1/info").json()["auth_required"] is False


def test_an_oversized_body_is_413_before_auth_or_upstreams(stack) -> None:
    big = "A" * (5 * 1024 * 1024)
    response = stack.client.post(
        "/v1/plan",
        content=f'{{"image": "{big}", "instruction": "x"}}',
        headers={**stack.auth(), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert stack.planners["planner-a"].calls == [] and stack.planners["planner-b"].calls == []


def test_too_many_pixels_is_413_without_reaching_upstreams(stack, make_png: Callable[..., str]) -> None:
    response = stack.client.post("/v1/replan", json=_plan_body(make_png(400, 300)), headers=stack.auth())
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "too_many_pixels" and error["param"] == "image" and "100000" in error["message"]
    assert not any(w.calls for w in [*stack.planners.values(), *stack.editors.values()])


def test_garbage_images_are_400(stack) -> None:
    response = stack.client.post("/v1/plan", json=_plan_body("bm90IGFuIGltYWdl"), headers=stack.auth())
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_image"


def test_image_urls_are_refused_unless_allow_listed(stack) -> None:
    response = stack.client.post("/v1/plan", json=_plan_body("https://example.com/cat.png"), headers=stack.auth())
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "image_url_not_allowed"
