"""Reward batch stores (Redis db 13 and SQLite) and idempotent per-sample scoring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from replan_eval.rewards.batches import SCORE_SAMPLE_TASK, score_one, submit_batch
from replan_eval.rewards.stage2 import RewardInput, Stage2Scorer
from replan_eval.rewards.store import (
    RedisRewardStore,
    RewardBatchNotFound,
    RewardBatchStore,
    SqliteRewardStore,
    open_reward_store,
)

INPUTS = [
    RewardInput(response="<think>a</think><gen_image>keep the rest as it is</gen_image>", image="aGk="),
    RewardInput(response="no tags at all", image="aGk="),
]


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RewardBatchStore]:
    if request.param == "sqlite":
        yield SqliteRewardStore(tmp_path / "rewards.sqlite")
        return
    redis_url = request.getfixturevalue("redis_url")  # the suite's private real Redis
    client = redis.Redis.from_url(redis_url, db=13)
    yield RedisRewardStore(client, ttl_s=120, prefix="test:replan:reward")
    for key in client.scan_iter("test:replan:reward:*"):
        client.delete(key)


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, list[object], str]] = []

    def send_task(self, name: str, args: list[object] | None = None, **options: object) -> None:
        self.sent.append((name, list(args or []), str(options.get("task_id"))))


def no_stage2(_: int) -> Stage2Scorer:
    raise AssertionError("stage-1 batches never build a stage-2 scorer")


def test_submit_stores_inputs_and_queues_one_task_per_sample(store: RewardBatchStore) -> None:
    sender = Sender()
    batch_id = submit_batch(sender, store, INPUTS, stage=1)
    assert store.batch_info(batch_id) == (2, 1)
    assert store.get_input(batch_id, 1) == INPUTS[1]
    assert [(n, a) for n, a, _ in sender.sent] == [
        (SCORE_SAMPLE_TASK, [batch_id, 0]),
        (SCORE_SAMPLE_TASK, [batch_id, 1]),
    ]
    assert store.results(batch_id) == [None, None]


def test_scoring_is_idempotent_and_results_come_back_in_order(store: RewardBatchStore) -> None:
    batch_id = store.create_batch(INPUTS, stage=1)
    second = score_one(store, batch_id, 1, scorer=no_stage2)
    first = score_one(store, batch_id, 0, scorer=no_stage2)
    again = score_one(store, batch_id, 0, scorer=no_stage2)
    assert again == first
    # "no tags at all": f=0; q = 0 + 0 − 20 (empty gen_image) = −20; total = 0.3·(−20) = −6
    assert second.score == pytest.approx(-6.0)
    assert [r.index for r in store.wait(batch_id, timeout_s=1)] == [0, 1]


def test_put_result_is_set_if_absent(store: RewardBatchStore) -> None:
    batch_id = store.create_batch(INPUTS, stage=1)
    result = score_one(store, batch_id, 0, scorer=no_stage2)
    assert store.put_result(batch_id, result.model_copy(update={"score": 99.0})) is False
    stored = store.get_result(batch_id, 0)
    assert stored is not None and stored.score == result.score


def test_unknown_batch_and_timeout(store: RewardBatchStore) -> None:
    with pytest.raises(RewardBatchNotFound):
        store.batch_info("nope")
    batch_id = store.create_batch(INPUTS, stage=1)
    with pytest.raises(TimeoutError, match="2 of 2 results still missing"):
        store.wait(batch_id, timeout_s=0.05, poll_s=0.01)


def test_open_reward_store_by_url(tmp_path: Path) -> None:
    assert isinstance(open_reward_store(f"sqlite:///{tmp_path}/r.sqlite"), SqliteRewardStore)
    with pytest.raises(ValueError, match="unsupported reward store URL"):
        open_reward_store("mongodb://x")
