"""The editor worker over HTTP, as real uvicorn processes with the tiny FLUX.1 Kontext and Qwen pipelines:
edits from a plan, raw planner text or an instruction alone; JSON, PNG and SSE answers; the original
reward route; /v1/info, health and metrics; progress on Redis pub/sub."""

from __future__ import annotations

import base64
import io
import json
import time

import httpx
import pytest
import redis
from editor_support import IMAGE_SIZE, STEPS, decode_png, metric, png_b64
from PIL import Image

from replan_common.jobs.sse import parse_sse
from replan_common.protocol import EditResponse, ProgressEvent, ProgressStage

PLAN = {
    "reasoning": "the cup is top left",
    "global_prompt": "keep remaining part of image unchanged.",
    "regions": [
        {"bbox": [4, 4, 30, 28], "hint": "a small potted plant"},
        {"bbox": [26, 20, 60, 46], "hint": "keep the table unchanged"},
    ],
}
PLANNER_TEXT = (
    "<think>The user wants the cup replaced.</think>"
    "<gen_image>keep remaining part of image unchanged.</gen_image>"
    '<region>[{"bbox_2d": [4, 4, 30, 28], "point_2d": [17, 16], "hint": "a small potted plant"}]</region>'
)


@pytest.fixture(params=["flux-kontext", "qwen-image-edit"])
def backbone_url(request: pytest.FixtureRequest, flux_url: str, qwen_url: str) -> tuple[str, str]:
    return request.param, flux_url if request.param == "flux-kontext" else qwen_url


def edit(url: str, body: dict[str, object], **headers: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/edit", json=body, headers=headers, timeout=60)


def test_edit_with_a_plan(backbone_url: tuple[str, str]) -> None:
    backbone, url = backbone_url
    response = edit(url, {"image": png_b64(), "plan": PLAN, "settings": {"steps": STEPS, "seed": 7}})
    assert response.status_code == 200, response.text
    body = EditResponse.model_validate(response.json())
    assert (body.width, body.height) == IMAGE_SIZE
    assert decode_png(body.image).size == IMAGE_SIZE
    assert [r.hint for r in body.plan.regions] == ["a small potted plant", "keep the table unchanged"]
    assert body.settings.backbone is not None and body.settings.backbone.value == backbone
    assert (body.settings.steps, body.settings.seed) == (STEPS, 7)
    assert body.settings.expand_value is not None  # every setting resolved
    assert {"decode_ms", "queue_ms", "denoise_ms"} <= set(body.timings_ms)


def test_edit_with_raw_planner_text(backbone_url: tuple[str, str]) -> None:
    _, url = backbone_url
    response = edit(url, {"image": png_b64(), "plan_text": PLANNER_TEXT, "settings": {"steps": STEPS}})
    assert response.status_code == 200, response.text
    plan = response.json()["plan"]
    assert plan["reasoning"] == "The user wants the cup replaced."
    assert plan["regions"] == [{"bbox": [4.0, 4.0, 30.0, 28.0], "hint": "a small potted plant"}]


def test_edit_with_an_instruction_alone_uses_no_regions(backbone_url: tuple[str, str]) -> None:
    _, url = backbone_url
    response = edit(url, {"image": png_b64(), "instruction": "make it night", "settings": {"steps": STEPS}})
    assert response.status_code == 200, response.text
    assert response.json()["plan"] == {"reasoning": "", "global_prompt": "make it night", "regions": []}


def test_same_seed_gives_the_same_image(flux_url: str) -> None:
    body = {"image": png_b64(), "plan": PLAN, "settings": {"steps": STEPS, "seed": 3}}
    first, second = edit(flux_url, body).json()["image"], edit(flux_url, body).json()["image"]
    assert first == second


def test_png_answer_carries_timings_in_headers(flux_url: str) -> None:
    response = edit(flux_url, {"image": png_b64(), "plan": PLAN, "settings": {"steps": STEPS}}, Accept="image/png")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    assert decode_png(response.content).size == IMAGE_SIZE
    timing = response.headers["server-timing"]
    assert "denoise;dur=" in timing and "queue;dur=" in timing


def test_sse_streams_progress_in_order_then_the_result(flux_url: str) -> None:
    steps = 3
    body = {"image": png_b64(), "plan": PLAN, "settings": {"steps": steps}}
    headers = {"Accept": "text/event-stream", "X-Replan-Job-Id": "job-sse-1"}
    with httpx.stream("POST", f"{flux_url}/v1/edit", json=body, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        messages = list(parse_sse(response.iter_lines()))
    names = [m.event for m in messages]
    assert names == ["progress"] * (2 + steps) + ["result"]
    assert [m.id for m in messages] == [str(i) for i in range(1, len(messages) + 1)]
    events = [ProgressEvent.model_validate_json(m.data) for m in messages[:-1]]
    assert {e.job_id for e in events} == {"job-sse-1"}
    assert [(e.stage, e.step, e.total) for e in events] == [
        (ProgressStage.QUEUED, None, steps),
        (ProgressStage.EDITING, 0, steps),
        *[(ProgressStage.STEP, i, steps) for i in range(1, steps + 1)],
    ]
    result = EditResponse.model_validate_json(messages[-1].data)
    assert decode_png(result.image).size == IMAGE_SIZE


def test_sse_reports_an_error_found_while_editing_as_an_error_event(flux_url: str) -> None:
    # Found by the pipeline itself, after the stream started: the global prompt is dropped and no region is left.
    body = {"image": png_b64(), "instruction": "x", "settings": {"steps": STEPS, "delete_main_prompt": True}}
    with httpx.stream(
        "POST", f"{flux_url}/v1/edit", json=body, headers={"Accept": "text/event-stream"}, timeout=60
    ) as response:
        assert response.status_code == 200
        messages = list(parse_sse(response.iter_lines()))
    assert [m.event for m in messages][-1] == "error"
    error = json.loads(messages[-1].data)
    assert error["status"] == 422
    assert error["error"]["code"] == "delete_main_prompt_without_regions"
    assert error["error"]["param"] == "settings.delete_main_prompt"


def test_bad_rules_are_refused_before_the_stream_starts(flux_url: str) -> None:
    body = {"image": png_b64(), "plan": PLAN, "settings": {"steps": STEPS, "custom_rules": {"Nope|N.B1": False}}}
    response = httpx.post(f"{flux_url}/v1/edit", json=body, headers={"Accept": "text/event-stream"}, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unknown_rule_label"


def test_reward_route_takes_exactly_the_original_clients_payload(flux_url: str) -> None:
    # The original reward client: requests.post(URL, json={image_base64, instruction, response}, timeout=600).
    buffer = io.BytesIO()
    Image.new("RGB", IMAGE_SIZE, (200, 100, 50)).save(buffer, format="JPEG")
    payload = {
        "image_base64": base64.b64encode(buffer.getvalue()).decode(),
        "instruction": "replace the cup with a plant",
        "response": PLANNER_TEXT,
    }
    response = httpx.post(f"{flux_url}/v1/images/generations", json=payload, timeout=600)
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["data"] and len(body["data"]) == 1 and list(body["data"][0]) == ["final_image_base64"]
    assert decode_png(body["data"][0]["final_image_base64"]).size == IMAGE_SIZE


def test_reward_route_takes_the_optional_fields(flux_url: str) -> None:
    payload = {
        "image_base64": png_b64(),
        "instruction": "x",
        "response": PLANNER_TEXT,
        "delete_main_prompt": False,
        "replace_global_prompt": True,
        "custom_global_prompt_text": "keep remaining parts of this image unchanged",
        "expand_value": 0.1,
        "expand_mode": "ratio",
        "bboxes_attend_to_each_other": False,
        "attention_rules": {"Noise Background, Noise BBox 1": False},
    }
    response = httpx.post(f"{flux_url}/v1/images/generations", json=payload, timeout=600)
    assert response.status_code == 200, response.text
    assert decode_png(response.json()["data"][0]["final_image_base64"]).size == IMAGE_SIZE


def test_info_health_and_metrics(flux_url: str, qwen_url: str) -> None:
    info = httpx.get(f"{qwen_url}/v1/info", timeout=5).json()
    assert info["backbone"] == "qwen-image-edit" and info["status"] == "ready"
    assert (info["preset"], info["device"], info["dtype"], info["model"]) == (
        "tiny",
        "cpu",
        "float32",
        "tiny-qwen-image-edit",
    )
    defaults = info["defaults"]
    assert defaults["backbone"] == "qwen-image-edit" and defaults["steps"] >= 1
    assert defaults["true_cfg_scale"] == 4.0 and defaults["negative_prompt"] == " "
    assert {"dense", "fast"} <= set(info["kernels"]) and info["max_queue"] == 1
    assert info["warmup_seconds"] is not None  # REPLAN_EDITOR_WARMUP=always: one small edit before ready
    flux_info = httpx.get(f"{flux_url}/v1/info", timeout=5).json()
    assert flux_info["warmup_seconds"] is None  # auto: only with compile
    assert httpx.get(f"{flux_url}/healthz", timeout=5).json()["status"] == "ok"
    assert httpx.get(f"{flux_url}/readyz", timeout=5).json()["status"] == "ready"
    text = httpx.get(f"{flux_url}/metrics", timeout=5).text
    for name in (
        "replan_editor_edit_seconds_bucket",
        "replan_editor_denoise_step_seconds_bucket",
        "replan_editor_queue_depth",
        "replan_editor_jobs_running",
        "replan_editor_gpu_memory_bytes",
        'replan_editor_edits_total{outcome="ok"}',
    ):
        assert name in text, name
    assert metric(flux_url, "replan_editor_gpu_memory_bytes") == 0.0  # CPU


def test_progress_is_published_on_redis(flux_url: str, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe("replan:progress:job-redis-1")
    assert pubsub.get_message(timeout=2)["type"] == "subscribe"  # type: ignore[index]
    response = edit(
        flux_url, {"image": png_b64(), "plan": PLAN, "settings": {"steps": STEPS}}, **{"X-Replan-Job-Id": "job-redis-1"}
    )
    assert response.status_code == 200
    stages: list[tuple[str, int | None]] = []
    deadline = time.monotonic() + 10
    while len(stages) < 2 + STEPS and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=1)
        if message and message["type"] == "message":
            event = ProgressEvent.model_validate_json(message["data"])
            stages.append((event.stage.value, event.step))
    pubsub.close()
    client.close()
    assert stages == [("queued", None), ("editing", 0), *[("step", i) for i in range(1, STEPS + 1)]]
