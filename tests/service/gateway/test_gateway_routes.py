"""Plan, edit, replan, the OpenAI images route, the original reward route, /v1/info and the web page."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path


def test_replan_plans_then_edits_with_that_plan(stack, image_b64: str) -> None:
    body = {"image": image_b64, "instruction": "replace the cup with a plant", "settings": {"seed": 7, "steps": 3}}
    response = stack.client.post("/v1/replan", json=body, headers={**stack.auth(), "X-Request-ID": "req-replan-1"})
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["plan"]["plan"]["global_prompt"] == "replace the cup with a plant"
    assert out["plan"]["plan"]["regions"][0]["hint"] == "x"
    assert out["image"] == image_b64 and (out["width"], out["height"]) == (32, 24)
    assert out["settings"]["seed"] == 7 and out["settings"]["steps"] == 3
    assert set(out["timings_ms"]) == {"plan_ms", "edit_ms"}
    # The request id travels to every upstream.
    seen = [h.get("x-request-id") for w in [*stack.planners.values(), *stack.editors.values()] for h in w.headers]
    assert seen == ["req-replan-1", "req-replan-1"]


def test_edit_accepts_each_plan_source(stack, image_b64: str) -> None:
    plan = {"global_prompt": "g", "regions": [{"bbox": [1, 2, 3, 4], "hint": "h"}]}
    for source in ({"plan": plan}, {"plan_text": "<gen_image>g</gen_image>"}, {"instruction": "make it red"}):
        response = stack.client.post("/v1/edit", json={"image": image_b64, **source}, headers=stack.auth())
        assert response.status_code == 200, response.text
    both = stack.client.post(
        "/v1/edit", json={"image": image_b64, "plan": plan, "instruction": "x"}, headers=stack.auth()
    )
    assert both.status_code == 422 and both.json()["error"]["code"] == "validation_error"


def test_openai_images_edits_plans_once_and_edits_n_times(stack) -> None:
    png = base64.b64decode(_png(stack))
    response = stack.client.post(
        "/v1/images/edits",
        files={"image": ("in.png", png, "image/png")},
        data={"prompt": "make the sky pink", "n": "2", "response_format": "b64_json", "size": "auto"},
        headers=stack.auth(),
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert isinstance(out["created"], int)
    assert [d["revised_prompt"] for d in out["data"]] == ["make the sky pink"] * 2
    assert base64.b64decode(out["data"][0]["b64_json"]) == png
    assert sum(len(w.calls) for w in stack.planners.values()) == 1
    assert sum(len(w.calls) for w in stack.editors.values()) == 2


def test_openai_images_edits_refuses_what_it_cannot_honour(stack) -> None:
    png = base64.b64decode(_png(stack))
    cases = [
        ({"response_format": "url"}, "unsupported_response_format"),
        ({"n": "9"}, "too_many_images"),
        ({"model": "dall-e-2"}, "model_not_found"),
        ({"size": "512x512"}, "unsupported_size"),
    ]
    for extra, code in cases:
        response = stack.client.post(
            "/v1/images/edits",
            files={"image": ("in.png", png, "image/png")},
            data={"prompt": "p", **extra},
            headers=stack.auth(),
        )
        assert response.status_code == 400, (extra, response.text)
        assert response.json()["error"]["code"] == code
    masked = stack.client.post(
        "/v1/images/edits",
        files={"image": ("in.png", png, "image/png"), "mask": ("m.png", png, "image/png")},
        data={"prompt": "p"},
        headers=stack.auth(),
    )
    assert masked.status_code == 400 and masked.json()["error"]["code"] == "mask_not_supported"
    missing = stack.client.post("/v1/images/edits", data={"prompt": "p"}, headers=stack.auth())
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "image_count"


def test_the_original_reward_payload_is_proxied_to_an_editor(stack, image_b64: str) -> None:
    payload = {
        "image_base64": image_b64,
        "instruction": "replace the cup",
        "response": '<think>t</think><gen_image>g</gen_image><region>[{"bbox_2d":[1,1,5,5],"hint":"h"}]</region>',
    }
    response = stack.client.post("/v1/images/generations", json=payload, headers=stack.auth())
    assert response.status_code == 200, response.text
    assert response.json() == {"data": [{"final_image_base64": image_b64}]}
    assert sum(w.calls.count("generations") for w in stack.editors.values()) == 1


def test_info_lists_backbones_workers_and_limits(stack) -> None:
    info = stack.client.get("/v1/info", headers=stack.auth()).json()
    assert info["backbones"] == ["flux-kontext"]
    assert info["auth_required"] is True
    assert {w["url"] for w in info["pools"]["editor"]} == {"http://editor-a", "http://editor-b"}
    assert info["limits"]["max_image_pixels"] == 100_000
    assert info["limits"]["image_urls_fetched_from"] == []
    assert info["jobs_executor"] == "recording"


def test_the_web_page_folder_is_served_at_root_without_shadowing_the_api(
    make_stack: Callable, tmp_path: Path, image_b64: str
) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<html>replan</html>")
    stack = make_stack(static_dir=tmp_path / "web")
    assert stack.client.get("/").text == "<html>replan</html>"
    assert stack.client.get("/healthz").status_code == 200
    assert (
        stack.client.post("/v1/plan", json={"image": image_b64, "instruction": "x"}, headers=stack.auth()).status_code
        == 200
    )
    missing = stack.client.get("/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_openapi_documents_every_public_route(stack) -> None:
    paths = stack.client.get("/openapi.json").json()["paths"]
    for path in [
        "/v1/plan",
        "/v1/edit",
        "/v1/replan",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/events",
        "/v1/images/edits",
        "/v1/images/generations",
        "/v1/info",
        "/healthz",
        "/readyz",
    ]:
        assert path in paths, path


def _png(stack) -> str:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
