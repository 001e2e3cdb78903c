"""`replan serve planner --preset tiny` as a real uvicorn process on loopback, driven over HTTP.

The tiny preset is a random-weight Qwen2.5-VL: its words are noise, but grammar-constrained decoding must
still give a schema-valid plan for every image and instruction, with every box inside the image. Bad
requests get a 4xx with a code, and the process keeps serving afterwards. One process serves the module.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import pytest
from planner_testkit import png_bytes, png_header_only

from replan_common.plan import region_plan_json_schema
from replan_common.protocol import PlanResponse
from tests.support.processes import RunningProcess, free_port, replan_command, start_process

pytestmark = pytest.mark.integration

CASES = [
    ((300, 200), "make the cup on the left red"),
    ((4000, 3000), "replace the used cup on the desk with a small potted plant"),
    ((640, 480), "remove the person on the right and keep the background"),
    ((96, 512), "turn the sky into a sunset with warm orange light"),
]


@pytest.fixture(scope="module")
def planner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    port = free_port()
    running = start_process(
        "planner",
        replan_command("serve", "planner", "--preset", "tiny", "--port", str(port)),
        log_dir=tmp_path_factory.mktemp("planner-logs"),
        url=f"http://127.0.0.1:{port}",
        timeout_s=120,
    )
    yield running
    running.stop()


def post_json(planner: RunningProcess, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{planner.url}/v1/plan", json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


def assert_valid_plan(answer: httpx.Response, size: tuple[int, int]) -> PlanResponse:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    jsonschema.validate(body["plan"], region_plan_json_schema())
    plan = PlanResponse.model_validate(body)
    width, height = size
    for region in plan.plan.regions:
        x1, y1, x2, y2 = region.bbox
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert plan.raw_text.startswith("<think>")
    assert plan.usage is not None and plan.usage.completion_tokens > 0
    return plan


@pytest.mark.parametrize(("size", "instruction"), CASES, ids=[f"{w}x{h}" for (w, h), _ in CASES])
def test_schema_valid_plan_over_http(planner: RunningProcess, size: tuple[int, int], instruction: str) -> None:
    image = base64.b64encode(png_bytes(*size)).decode("ascii")
    plan = assert_valid_plan(post_json(planner, {"image": image, "instruction": instruction}), size)
    assert plan.model == "tiny-qwen2.5-vl-random"


def test_multipart_upload_and_rephrase_mode(planner: RunningProcess) -> None:
    answer = httpx.post(
        f"{planner.url}/v1/plan",
        files={"image": ("photo.png", png_bytes(640, 480), "image/png")},
        data={"instruction": "make the fruit that is not an apple blue", "options": json.dumps({"mode": "rephrase"})},
        timeout=60,
    )
    plan = assert_valid_plan(answer, (640, 480))
    assert plan.plan.regions == ()
    assert "<region>" not in plan.raw_text


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"instruction": "make it red"}, 422, "validation_error"),  # no image
        ({"image": base64.b64encode(b"GIF89a not really").decode(), "instruction": "x"}, 400, "invalid_image"),
        ({"image": "%%% not base64 %%%", "instruction": "x"}, 400, "invalid_base64"),
        ({"image": "https://example.com/cat.png", "instruction": "x"}, 400, "image_url_not_allowed"),
        ({"image": "huge", "instruction": "x"}, 413, "too_many_pixels"),
        ({"image": "small", "instruction": ""}, 422, "validation_error"),
        ({"image": "small", "instruction": "   "}, 400, "empty_instruction"),
        ({"image": "small", "instruction": "x", "options": {"mode": "nope"}}, 422, "validation_error"),
    ],
    ids=["no-image", "not-an-image", "not-base64", "url", "huge", "empty", "blank", "bad-mode"],
)
def test_bad_request_is_4xx_with_a_code(
    planner: RunningProcess, body: dict[str, object], status: int, code: str
) -> None:
    images = {"huge": png_header_only(9000, 9000), "small": png_bytes(64, 64)}
    if body.get("image") in images:
        body = {**body, "image": base64.b64encode(images[str(body["image"])]).decode("ascii")}
    answer = post_json(planner, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_multipart_without_image_and_wrong_content_type(planner: RunningProcess) -> None:
    answer = httpx.post(f"{planner.url}/v1/plan", data={"instruction": "x"}, files={"other": ("a", b"a")}, timeout=30)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "missing_image"
    answer = httpx.post(f"{planner.url}/v1/plan", content=b"x", headers={"content-type": "text/plain"}, timeout=30)
    assert answer.status_code == 415 and answer.json()["error"]["code"] == "unsupported_media_type"


def test_service_stays_up_and_counts_requests(planner: RunningProcess) -> None:
    post_json(planner, {"image": "AAAA", "instruction": "x"})
    image = base64.b64encode(png_bytes(300, 200)).decode("ascii")
    assert_valid_plan(post_json(planner, {"image": image, "instruction": "make it red"}), (300, 200))
    assert planner.alive()
    metrics = httpx.get(f"{planner.url}/metrics", timeout=10).text
    assert 'replan_planner_plan_duration_seconds_count{backend="transformers",mode="regions",outcome="ok"}' in metrics
    assert "replan_planner_generated_tokens_bucket" in metrics
    info = httpx.get(f"{planner.url}/v1/planner", timeout=10).json()
    assert info["backend"] == "transformers" and info["structured_output"] == "xgrammar" and info["ready"]


def test_cli_plan_against_the_running_service(planner: RunningProcess, tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    image.write_bytes(png_bytes(300, 200))
    done = subprocess.run(
        replan_command("plan", "--image", str(image), "--instruction", "make it red", "--url", str(planner.url)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    PlanResponse.model_validate_json(done.stdout)
