"""`POST /v1/rewards` logic without HTTP: request rules, stage 1 inline, stage 2 through a queue, timeouts.

Stage 2 runs through the real `submit_batch` → `SqliteRewardStore` → `score_one` path; the "queue" is a
sender that hands each task to a thread, as a worker would take it, and the editor and judge are the
in-process stand-ins of test_stage2.py (their HTTP clients are tested there).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from replan_common.errors import BadRequest, ServiceUnavailable
from replan_eval.judge import Judge
from replan_eval.rewards.batches import SCORE_SAMPLE_TASK, score_one
from replan_eval.rewards.protocol import RewardSample, RewardsRequest, RewardsResponse, RewardStatus
from replan_eval.rewards.service import RewardService
from replan_eval.rewards.stage1 import score_stage1
from replan_eval.rewards.stage2 import Stage2Scorer, Stage2Status
from replan_eval.rewards.store import SqliteRewardStore

from .conftest import FixedScores
from .test_stage2 import DETAILS, ORIGINAL, VALID, FakeEditor

GATED = "<think>no tags closed"  # format 0: gated, planning 0
# Stage 1 of VALID is 0.905 (test_stage1.py); T=5→1, E=3→0, C=5→1: planning = (1 + 0 + 1·0)/3 = 1/3.
VALID_STAGE2 = 1 / 3 + 0.2 * 0.905


class ThreadSender:
    """A queue whose 'worker' scores each task on its own thread (or drops it, to simulate a lost task)."""

    def __init__(self, store: SqliteRewardStore, scorer: Stage2Scorer, drop: set[int] | None = None) -> None:
        self.store = store
        self.scorer = scorer
        self.drop = drop or set()
        self.sent: list[tuple[str, list[object], dict[str, object]]] = []
        self.threads: list[threading.Thread] = []

    def send_task(self, name: str, args: Sequence[object] | None = None, **options: object) -> object:
        assert args is not None
        self.sent.append((name, list(args), options))
        batch_id, index = str(args[0]), int(args[1])  # type: ignore[call-overload]
        if index not in self.drop:
            thread = threading.Thread(
                target=score_one, args=(self.store, batch_id, index), kwargs={"scorer": lambda _: self.scorer}
            )
            thread.start()
            self.threads.append(thread)
        return None


class BrokenSender:
    def send_task(self, name: str, args: Sequence[object] | None = None, **options: object) -> object:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6399. Connection refused.")


@pytest.fixture
def store(tmp_path: Path) -> SqliteRewardStore:
    return SqliteRewardStore(tmp_path / "rewards.sqlite")


@pytest.fixture
def scorer() -> Stage2Scorer:
    return Stage2Scorer(FakeEditor(), Judge(FixedScores({"target": 5, "effect": 3, "consistency": 5})))


def run_score(service: RewardService, body: RewardsRequest) -> RewardsResponse:
    return anyio.run(service.score, body)


def request(stage: int, responses: list[str], **more: object) -> RewardsRequest:
    samples = [{"response": r, "image": ORIGINAL, "extra_info": DETAILS} for r in responses]
    return RewardsRequest.model_validate({"stage": stage, "samples": samples, **more})


def test_stage1_is_scored_in_order_without_the_queue(store: SqliteRewardStore, scorer: Stage2Scorer) -> None:
    sender = ThreadSender(store, scorer)
    service = RewardService(sender=sender, store=store)
    responses = [VALID, GATED, "", VALID.replace("<region>", "<region>oops")]
    reply = run_score(service, request(1, responses))
    assert sender.sent == []
    assert reply.stage == 1 and reply.batch_id is None and reply.missing == []
    assert reply.scores == [score_stage1(r).total for r in responses]
    assert reply.scores[0] == pytest.approx(0.905)
    assert [r.index for r in reply.results] == [0, 1, 2, 3]
    assert all(r.status is RewardStatus.SCORED and r.stage2 is None for r in reply.results)
    assert reply.results[0].stage1 is not None and reply.results[0].stage1.format == 1.0
    assert "total" in reply.timings_ms


def test_stage1_needs_no_image() -> None:
    parsed = RewardsRequest.model_validate({"samples": [{"response": VALID}]})
    assert parsed.stage == 1 and parsed.samples[0].image is None


def test_stage2_goes_through_the_reward_queue_and_keeps_input_order(
    store: SqliteRewardStore, scorer: Stage2Scorer
) -> None:
    sender = ThreadSender(store, scorer)
    service = RewardService(sender=sender, store=store, poll_s=0.01)
    reply = run_score(service, request(2, [VALID, GATED, VALID]))
    assert [name for name, _, _ in sender.sent] == [SCORE_SAMPLE_TASK] * 3
    assert [args[1] for _, args, _ in sender.sent] == [0, 1, 2]
    assert reply.stage == 2 and reply.batch_id and reply.missing == []
    assert reply.scores[0] == pytest.approx(VALID_STAGE2)
    assert reply.scores[2] == pytest.approx(VALID_STAGE2)
    assert reply.scores[1] == pytest.approx(0.2 * score_stage1(GATED).total)
    assert [r.status for r in reply.results] == [RewardStatus.SCORED, RewardStatus.GATED, RewardStatus.SCORED]
    detail = reply.results[0].stage2
    assert detail is not None and (detail.target, detail.effect, detail.consistency) == (1.0, 0.0, 1.0)


def test_missing_instruction_details_score_the_stage1_part_only(store: SqliteRewardStore, scorer: Stage2Scorer) -> None:
    service = RewardService(sender=ThreadSender(store, scorer), store=store, poll_s=0.01)
    body = RewardsRequest.model_validate({"stage": 2, "samples": [{"response": VALID, "image": ORIGINAL}]})
    reply = run_score(service, body)
    assert reply.results[0].status is RewardStatus.MISSING_FIELDS
    assert reply.scores == [pytest.approx(0.2 * 0.905)]
    assert reply.results[0].error and "instruction_details" in reply.results[0].error


def test_samples_unscored_when_the_wait_ends_score_zero_and_are_listed(
    store: SqliteRewardStore, scorer: Stage2Scorer
) -> None:
    sender = ThreadSender(store, scorer, drop={1})
    service = RewardService(sender=sender, store=store, poll_s=0.01)
    reply = run_score(service, request(2, [VALID, VALID, VALID], timeout_s=0.5))
    assert reply.missing == [1]
    assert reply.scores[1] == 0.0 and reply.results[1].status is RewardStatus.TIMED_OUT
    assert reply.results[1].error and "within 0.5 s" in reply.results[1].error
    assert reply.scores[0] == pytest.approx(VALID_STAGE2) and reply.scores[2] == pytest.approx(VALID_STAGE2)


def test_a_batch_over_the_limit_is_refused(store: SqliteRewardStore, scorer: Stage2Scorer) -> None:
    service = RewardService(sender=ThreadSender(store, scorer), store=store, max_batch=2)
    with pytest.raises(BadRequest) as caught:
        run_score(service, request(1, [VALID] * 3))
    assert caught.value.code == "batch_too_large" and caught.value.param == "samples"
    assert "limit of 2" in caught.value.message


def test_a_wait_above_the_server_limit_is_refused(store: SqliteRewardStore, scorer: Stage2Scorer) -> None:
    service = RewardService(sender=ThreadSender(store, scorer), store=store, timeout_s=60)
    with pytest.raises(BadRequest) as caught:
        run_score(service, request(2, [VALID], timeout_s=61))
    assert caught.value.code == "timeout_too_long" and caught.value.param == "timeout_s"


def test_an_unreachable_broker_is_503_naming_the_settings(store: SqliteRewardStore) -> None:
    service = RewardService(sender=BrokenSender(), store=store)
    with pytest.raises(ServiceUnavailable) as caught:
        run_score(service, request(2, [VALID]))
    assert caught.value.code == "reward_queue_unavailable"
    assert "REPLAN_WORKER_BROKER_URL" in caught.value.message and caught.value.retry_after_s


def test_stage2_without_an_image_is_a_request_error_naming_the_sample() -> None:
    with pytest.raises(ValidationError) as caught:
        RewardsRequest.model_validate(
            {"stage": 2, "samples": [{"response": VALID, "image": ORIGINAL}, {"response": VALID}]}
        )
    assert "samples[1].image" in str(caught.value)


def test_an_empty_batch_and_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        RewardsRequest.model_validate({"samples": []})
    with pytest.raises(ValidationError):
        RewardsRequest.model_validate({"samples": [{"response": "x", "reponse": "typo"}]})
    with pytest.raises(ValidationError):
        RewardsRequest.model_validate({"stage": 3, "samples": [{"response": "x"}]})


def test_the_original_field_names_and_verl_image_lists_are_accepted() -> None:
    sample = RewardSample.model_validate({"response": "x", "input_image_base64": [ORIGINAL]})
    assert sample.image == ORIGINAL
    assert sample.to_core().image == ORIGINAL


def test_every_stage2_status_has_a_reward_status() -> None:
    assert {s.value for s in Stage2Status} <= {s.value for s in RewardStatus}
