"""`POST /v1/rewards` on a real gateway: stage 1 at once (no worker), stage 2 through the `reward` queue to a
`replan serve worker`, the tiny editor and the judge stub; the verl/EasyR1 and TRL adapters over HTTP."""

from __future__ import annotations

import httpx
import pytest
from PIL import Image

from replan_eval.adapters.client import RewardClient, RewardClientConfig
from replan_eval.adapters.trl import make_reward_func
from replan_eval.adapters.verl import compute_score
from tests.integration.eval.conftest import API_KEY, EvalServices, Launch, png_b64
from tests.unit.eval.test_stage1 import CASES

pytestmark = pytest.mark.integration

THINK = "The user wants the white mug replaced by a plant; only the mug changes, the rest stays the same."
VALID = (  # stage 1: f=1, q=0.75, r=0.9, total 0.905 (tests/unit/eval/test_stage1.py)
    f"<think>{THINK}</think><gen_image>keep remaining part of image unchanged.</gen_image>"
    '<region>[{"bbox_2d": [4, 2, 30, 40], "hint": "a small potted plant"}]</region>'
)
DETAILS = {"instruction_details": {"editing_instruction": "replace the mug", "referring_expression": "the mug"}}
# The judge stub answers T=5 (→1), E=3 (→0), C=5 (→1): planning = (1 + 0 + 1·0)/3 = 1/3.
VALID_STAGE2 = 1 / 3 + 0.2 * 0.905


def post(services: EvalServices, body: dict[str, object], key: str | None = API_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{services.gateway_url}/v1/rewards", json=body, headers=headers, timeout=150)


def test_stage1_equals_the_hand_computed_values_without_any_worker(eval_services: EvalServices) -> None:
    body = {"stage": 1, "samples": [{"response": response} for _, response, *_ in CASES]}
    reply = post(eval_services, body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert len(CASES) >= 20 and data["stage"] == 1 and data["missing"] == []
    for (name, _, fmt, quality, region, total), score, result in zip(
        CASES, data["scores"], data["results"], strict=True
    ):
        assert score == pytest.approx(total), name
        assert (result["stage1"]["format"], result["stage1"]["quality"], result["stage1"]["region"]) == (
            pytest.approx(fmt),
            pytest.approx(quality),
            pytest.approx(region),
        ), name


def test_requests_are_authenticated_and_checked(eval_services: EvalServices) -> None:
    assert post(eval_services, {"samples": [{"response": "x"}]}, key=None).status_code == 401
    assert post(eval_services, {"samples": [{"response": "x"}]}, key="sk-wrong").status_code == 401
    no_image = post(eval_services, {"stage": 2, "samples": [{"response": VALID}]})
    assert no_image.status_code == 422 and "samples[0].image" in no_image.json()["error"]["message"]
    too_long = post(eval_services, {"stage": 2, "timeout_s": 10_000, "samples": [{"response": VALID, "image": "x"}]})
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "timeout_too_long"


def test_stage2_is_scored_by_a_reward_worker_through_the_editor_and_judge(
    eval_services: EvalServices, launch: Launch
) -> None:
    eval_services.start_worker(launch, "reward", "reward-worker")
    edits_before = eval_services.editor_edits_ok()
    judge_before = eval_services.judge_calls()["by_dimension"]
    image = png_b64((40, 160, 90))
    samples = [
        {"response": VALID, "image": image, "extra_info": DETAILS},
        {"response": "<think>unfinished", "image": image, "extra_info": DETAILS},  # gated: format 0
        {"response": VALID, "input_image_base64": image},  # the original's field; no instruction details
    ]
    reply = post(eval_services, {"stage": 2, "samples": samples})
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["stage"] == 2 and data["batch_id"] and data["missing"] == []
    assert [r["status"] for r in data["results"]] == ["scored", "gated", "missing_fields"]
    assert data["scores"][0] == pytest.approx(VALID_STAGE2)
    assert data["scores"][1] == pytest.approx(0.2 * data["results"][1]["stage1"]["total"])
    assert data["scores"][2] == pytest.approx(0.2 * 0.905)
    detail = data["results"][0]["stage2"]
    assert (detail["target"], detail["effect"], detail["consistency"]) == (1.0, 0.0, 1.0)
    assert detail["verdicts"]["target"]["score"] == 5
    # Only the sample past the gate with its details was edited and judged (three dimensions).
    assert eval_services.editor_edits_ok() - edits_before == 1
    judged = eval_services.judge_calls()["by_dimension"]
    assert {d: judged.get(d, 0) - judge_before.get(d, 0) for d in ("target", "effect", "consistency")} == {
        "target": 1,
        "effect": 1,
        "consistency": 1,
    }

    # The trainer adapters reach the same server over HTTP.
    config = RewardClientConfig(url=f"{eval_services.gateway_url}/v1/rewards", api_key=API_KEY)
    verl_scores = compute_score(
        data_sources=["text_refinement_edit", "edit_region_planning"],
        solution_strs=[VALID, VALID],
        ground_truths=[None, None],
        extra_infos=[{}, {**DETAILS, "image": image}],
        client=RewardClient(config),
    )
    assert verl_scores == [pytest.approx(0.905), pytest.approx(VALID_STAGE2)]
    trl_reward = make_reward_func(stage=2, config=config)
    pil = Image.new("RGB", (64, 48), (200, 40, 40))
    trl_scores = trl_reward(prompts=["p"], completions=[[{"role": "assistant", "content": VALID}]], image=[pil],
                            extra_info=[DETAILS])  # fmt: skip
    assert trl_scores == [pytest.approx(VALID_STAGE2)]


def test_without_a_reward_worker_stage2_samples_time_out_to_zero(eval_services: EvalServices) -> None:
    # Last in this module: its task stays queued for whichever reward worker comes next.
    body = {"stage": 2, "timeout_s": 1, "samples": [{"response": VALID, "image": png_b64(), "extra_info": DETAILS}]}
    reply = post(eval_services, body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    assert data["scores"] == [0.0] and data["missing"] == [0]
    assert data["results"][0]["status"] == "timed_out" and "within 1 s" in data["results"][0]["error"]


def test_an_unreachable_server_scores_zero_after_the_original_retries() -> None:
    config = RewardClientConfig(url="http://127.0.0.1:9/v1/rewards", attempts=3, retry_delay_s=0.05)
    reward = make_reward_func(stage=1, config=config)
    assert reward(prompts=["p", "p"], completions=[VALID, VALID]) == [0.0, 0.0]
