"""Trainer adapters against a reward server on httpx.MockTransport: retries, zeros, chunks, both verl
conventions, TRL completions and columns. The real server is exercised in tests/integration/eval."""

from __future__ import annotations

import base64
import io
import json
import threading

import httpx
import pytest
from PIL import Image

from replan_eval.adapters.client import RewardClient, RewardClientConfig
from replan_eval.adapters.inputs import encode_image, extra_info_dict, find_image, stage_for_task
from replan_eval.adapters.trl import completion_text, make_reward_func, replan_stage1, replan_stage2
from replan_eval.adapters.verl import compute_score
from replan_eval.rewards.protocol import (
    RewardSample,
    RewardSampleResult,
    RewardsRequest,
    RewardsResponse,
    RewardStatus,
)
from replan_eval.rewards.service import score_stage1_batch
from replan_eval.rewards.stage1 import score_stage1

from .test_stage2 import DETAILS, ORIGINAL, VALID

STAGE2_SCORE = 1.25  # what the stand-in server gives every stage-2 sample


class Server:
    """A stand-in reward server: real stage-1 scoring, a fixed stage-2 score; scripted failures first."""

    def __init__(self, failures: list[int | Exception] | None = None) -> None:
        self.failures = list(failures or [])
        self.requests: list[RewardsRequest] = []
        self.headers: list[httpx.Headers] = []
        self._lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.headers.append(request.headers)
            if self.failures:
                failure = self.failures.pop(0)
                if isinstance(failure, Exception):
                    raise failure
                return httpx.Response(failure, json={"error": {"message": "scripted", "code": "scripted"}})
            body = RewardsRequest.model_validate_json(request.content)
            self.requests.append(body)
        if body.stage == 1:
            reply = score_stage1_batch(body)
        else:
            results = [
                RewardSampleResult(
                    index=i, score=STAGE2_SCORE, status=RewardStatus.SCORED, stage1=score_stage1(s.response)
                )
                for i, s in enumerate(body.samples)
            ]
            reply = RewardsResponse(stage=2, batch_id="b1", scores=[STAGE2_SCORE] * len(results), results=results)
        return httpx.Response(200, content=reply.model_dump_json())

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def client(server: Server, sleeps: list[float] | None = None, **config: object) -> RewardClient:
    settings = RewardClientConfig(url="http://rewards.test/v1/rewards", **config)  # type: ignore[arg-type]
    return RewardClient(settings, transport=server.transport(), sleep=(sleeps if sleeps is not None else []).append)


def test_scores_come_back_in_order_with_detail() -> None:
    server = Server()
    responses = [VALID, "<think>x", ""]
    outcome = client(server).score([RewardSample(response=r) for r in responses], stage=1)
    assert outcome.scores == [score_stage1(r).total for r in responses]
    assert outcome.failed == 0 and [d.index for d in outcome.details if d] == [0, 1, 2]


@pytest.mark.parametrize("failure", [500, 502, 503, 429, httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
def test_transient_failures_are_retried_5_s_apart(failure: int | Exception) -> None:
    server, sleeps = Server([failure, failure]), list[float]()
    outcome = client(server, sleeps).score([RewardSample(response=VALID)], stage=1)
    assert outcome.scores == [pytest.approx(0.905)]
    assert sleeps == [5.0, 5.0] and len(server.requests) == 1


def test_three_failures_score_zero_instead_of_raising() -> None:
    server, sleeps = Server([503, 503, 503]), list[float]()
    outcome = client(server, sleeps).score([RewardSample(response=VALID)] * 2, stage=1)
    assert outcome.scores == [0.0, 0.0] and outcome.failed == 2 and sleeps == [5.0, 5.0]


@pytest.mark.parametrize("status", [400, 401, 413, 422])
def test_a_client_error_scores_zero_without_retrying(status: int) -> None:
    server, sleeps = Server([status]), list[float]()
    outcome = client(server, sleeps).score([RewardSample(response=VALID)], stage=1)
    assert outcome.scores == [0.0] and sleeps == [] and server.failures == []


def test_a_reply_of_the_wrong_length_scores_zero() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=RewardsResponse(stage=1, scores=[], results=[]).model_dump_json())

    config = RewardClientConfig(url="http://rewards.test/v1/rewards")
    outcome = RewardClient(config, transport=httpx.MockTransport(handler)).score([RewardSample(response="x")], stage=1)
    assert outcome.scores == [0.0]


def test_large_batches_are_chunked_and_a_failed_chunk_scores_zero_alone() -> None:
    server = Server([400])  # the first chunk to arrive fails for good
    samples = [RewardSample(response=VALID if i % 2 else "") for i in range(7)]
    outcome = client(server, max_batch=3, max_concurrency=1).score(samples, stage=1)
    assert [len(r.samples) for r in server.requests] == [3, 1]
    assert outcome.scores[:3] == [0.0, 0.0, 0.0]
    assert outcome.scores[3:] == [score_stage1(s.response).total for s in samples[3:]]
    assert [d.index for d in outcome.details if d] == [3, 4, 5, 6]


def test_chunks_also_respect_the_request_size_limit() -> None:
    server = Server()
    samples = [RewardSample(response="x", image=ORIGINAL) for _ in range(5)]
    per_sample = len(ORIGINAL) + 100
    outcome = client(server, max_batch=32, max_request_bytes=2 * per_sample, max_concurrency=1).score(samples, stage=2)
    assert [len(r.samples) for r in server.requests] == [2, 2, 1]
    assert outcome.scores == [STAGE2_SCORE] * 5


def test_stage2_samples_without_an_image_score_zero_and_are_not_sent() -> None:
    server = Server()
    samples = [RewardSample(response=VALID, image=ORIGINAL), RewardSample(response=VALID)]
    outcome = client(server).score(samples, stage=2)
    assert outcome.scores == [STAGE2_SCORE, 0.0]
    assert len(server.requests) == 1 and len(server.requests[0].samples) == 1


def test_the_api_key_is_sent_as_a_bearer_token() -> None:
    server = Server()
    client(server, api_key="sk-train").score([RewardSample(response="x")], stage=1)
    assert server.headers[0]["authorization"] == "Bearer sk-train"


def test_config_from_the_environment() -> None:
    config = RewardClientConfig.from_env(
        {"REPLAN_REWARD_URL": "http://gw:8000/v1/rewards", "REPLAN_REWARD_ATTEMPTS": "5", "REPLAN_REWARD_API_KEY": "k"}
    )
    assert (config.url, config.attempts, config.api_key, config.retry_delay_s) == (
        "http://gw:8000/v1/rewards",
        5,
        "k",
        5,
    )
    with pytest.raises(ValueError, match="REPLAN_REWARD_TIMEOUT_S"):
        RewardClientConfig.from_env({"REPLAN_REWARD_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match="http"):
        RewardClientConfig.from_env({"REPLAN_REWARD_URL": "gw:8000"})


# ------------------------------------------------------------------------------------------------- verl


def test_verl_batch_convention_returns_floats() -> None:
    server = Server()
    scores = compute_score(
        data_sources=["iv_edit", "iv_edit"],
        solution_strs=[VALID, ""],
        ground_truths=[None, None],
        extra_infos=[{"index": 0}, {"index": 1}],
        client=client(server),
    )
    assert scores == [pytest.approx(0.905), score_stage1("").total]


def test_verl_return_dict_gives_score_and_parts() -> None:
    scores = compute_score(
        data_sources=["x"], solution_strs=[VALID], ground_truths=[None], extra_infos=[None], return_dict=True,
        client=client(Server()),
    )  # fmt: skip
    first = scores[0]
    assert isinstance(first, dict)
    assert first["score"] == pytest.approx(0.905) and first["format"] == 1.0 and first["failed"] == 0.0


def test_the_task_name_picks_the_stage_per_sample() -> None:
    server = Server()
    extra = {**DETAILS, "image": ORIGINAL, "task_name": "edit_region_planning"}
    scores = compute_score(
        data_sources=["text_refinement_edit", "any"],
        solution_strs=[VALID, VALID],
        ground_truths=[None, None],
        extra_infos=[{}, extra],
        client=client(server),
    )
    assert scores == [pytest.approx(0.905), STAGE2_SCORE]
    assert sorted(r.stage for r in server.requests) == [1, 2]
    stage2 = next(r for r in server.requests if r.stage == 2)
    assert stage2.samples[0].image == ORIGINAL and stage2.samples[0].extra_info["instruction_details"]


def test_easyr1_batch_convention_returns_overall_dicts() -> None:
    server = Server()
    inputs = [
        {"response": VALID, "response_length": 60, "ground_truth": json.dumps(DETAILS), "images": [ORIGINAL]},
        {"response": "", "response_length": 0, "ground_truth": ""},
    ]
    scores = compute_score(inputs, stage=2, client=client(server))
    assert [s["overall"] for s in scores] == [STAGE2_SCORE, 0.0]
    assert scores[1]["failed"] == 1.0  # no image: never sent
    assert server.requests[0].samples[0].extra_info == DETAILS


def test_a_bad_stage_is_refused_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server()
    with pytest.raises(ValueError, match="stage keyword"):
        compute_score(solution_strs=["x"], stage=3, client=client(server))
    monkeypatch.setenv("REPLAN_REWARD_STAGE", "two")
    with pytest.raises(ValueError, match="REPLAN_REWARD_STAGE"):
        compute_score(solution_strs=["x"], client=client(server))
    assert server.requests == []
    with pytest.raises(TypeError):
        compute_score()
    with pytest.raises(TypeError, match="reward_manager=batch"):
        compute_score(data_source="x", solution_str=VALID, ground_truth=None)  # type: ignore[call-overload]


def test_the_environment_stage_yields_to_task_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLAN_REWARD_STAGE", "2")
    server = Server()
    scores = compute_score(
        data_sources=["text_refinement_edit", "other"],
        solution_strs=[VALID, VALID],
        extra_infos=[{}, {**DETAILS, "image": ORIGINAL}],
        client=client(server),
    )
    assert scores == [pytest.approx(0.905), STAGE2_SCORE]


# -------------------------------------------------------------------------------------------------- TRL


def test_trl_reward_reads_chat_completions_and_logs_parts() -> None:
    server, metrics = Server(), dict[str, float]()
    reward = make_reward_func(
        stage=1, config=RewardClientConfig(url="http://rewards.test/v1/rewards"), transport=server.transport()
    )
    completions = [
        [{"role": "assistant", "content": VALID}],
        [{"role": "assistant", "content": [{"type": "text", "text": ""}]}],
    ]
    scores = reward(prompts=["p", "p"], completions=completions, log_metric=metrics.__setitem__, trainer_state=None)
    assert reward.__name__ == "replan_stage1"
    assert scores == [pytest.approx(0.905), score_stage1("").total]
    assert metrics["replan/format"] == pytest.approx(0.5) and metrics["replan/failed"] == 0.0


def test_trl_stage2_encodes_pil_images_and_extra_info_columns() -> None:
    server = Server()
    reward = make_reward_func(
        stage=2, config=RewardClientConfig(url="http://rewards.test/v1/rewards"), transport=server.transport()
    )
    image = Image.new("RGB", (8, 6), (1, 2, 3))
    scores = reward(prompts=["p"], completions=[VALID], image=[image], extra_info=[json.dumps(DETAILS)])
    assert scores == [STAGE2_SCORE]
    sent = server.requests[0].samples[0]
    assert Image.open(io.BytesIO(base64.b64decode(sent.image or ""))).size == (8, 6)
    assert sent.extra_info == DETAILS


def test_ready_made_trl_rewards_are_named_for_trl_logs() -> None:
    assert (replan_stage1.__name__, replan_stage2.__name__) == ("replan_stage1", "replan_stage2")
    with pytest.raises(TypeError):
        completion_text(42)


# ----------------------------------------------------------------------------------------------- inputs


def test_images_are_found_in_every_form_trainers_use(tmp_path: pytest.TempPathFactory) -> None:
    raw = base64.b64decode(ORIGINAL)
    path = tmp_path / "in.png"  # type: ignore[operator]
    path.write_bytes(raw)
    assert encode_image(ORIGINAL) == ORIGINAL
    assert encode_image([raw]) == ORIGINAL
    assert encode_image({"bytes": raw, "path": None}) == ORIGINAL
    assert encode_image(str(path)) == ORIGINAL
    assert encode_image({"image": [str(path)]}) == ORIGINAL
    assert encode_image([]) is None and encode_image("  ") is None
    assert find_image({"other": 1}, {"multi_modal_data": {"images": [raw]}}) == ORIGINAL
    with pytest.raises(TypeError, match="PIL"):
        encode_image(3.5)


def test_extra_info_is_read_from_dicts_and_json_strings() -> None:
    assert extra_info_dict(json.dumps(DETAILS)) == DETAILS
    assert extra_info_dict({**DETAILS, "image": ORIGINAL}) == DETAILS
    assert extra_info_dict({**DETAILS, "array": object()}) == DETAILS
    assert extra_info_dict("not json") == {} and extra_info_dict(None) == {}
    assert stage_for_task(None, "edit_region_planning") == 2 and stage_for_task("other") is None
