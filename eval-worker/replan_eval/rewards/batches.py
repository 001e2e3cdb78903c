"""Reward batches end to end, without Celery in sight: submit, score one sample, wait for all.

The gateway calls `submit_batch` (store the inputs, queue one ``replan.reward.score_sample`` task per
sample, addressed by name so the gateway imports no task code) and then `RewardBatchStore.wait`; the
worker task calls `score_one`, which is idempotent: a sample that already has a result is not scored
again, and `put_result` is set-if-absent, so two deliveries of one task still leave one result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from replan_eval.rewards.stage1 import score_stage1
from replan_eval.rewards.stage2 import RewardInput, Stage2Scorer
from replan_eval.rewards.store import RewardBatchStore, RewardResult, RewardStage

__all__ = ["SCORE_SAMPLE_TASK", "TaskSender", "score_one", "submit_batch"]

#: The worker task that scores one sample of a batch (queue ``reward``).
SCORE_SAMPLE_TASK = "replan.reward.score_sample"


class TaskSender(Protocol):
    """The part of a Celery app that `submit_batch` uses."""

    def send_task(self, name: str, args: Sequence[object] | None = ..., **options: object) -> object: ...


def submit_batch(
    sender: TaskSender, store: RewardBatchStore, inputs: Sequence[RewardInput], *, stage: RewardStage
) -> str:
    """Store the batch and queue its samples; returns the batch id to wait on."""
    batch_id = store.create_batch(inputs, stage=stage)
    for index in range(len(inputs)):
        # The task id is derived from (batch, index): resubmitting the same task is recognisable in Flower/logs.
        # Results travel through the store, so the result backend is left out: with it, Celery would subscribe
        # the sender to one Redis channel per task that nobody ever reads.
        sender.send_task(
            SCORE_SAMPLE_TASK, args=[batch_id, index], task_id=f"reward-{batch_id}-{index}", ignore_result=True
        )
    return batch_id


def score_one(
    store: RewardBatchStore, batch_id: str, index: int, *, scorer: Callable[[int], Stage2Scorer]
) -> RewardResult:
    """Score sample ``index`` of a batch unless already scored; returns the stored result.

    Args:
        scorer: builds the stage-2 scorer for a shard (the index), so samples spread over the editors.
    """
    existing = store.get_result(batch_id, index)
    if existing is not None:
        return existing
    _, stage = store.batch_info(batch_id)
    sample = store.get_input(batch_id, index)
    if stage == 1:
        stage1 = score_stage1(sample.response)
        result = RewardResult(index=index, stage=1, score=stage1.total, stage1=stage1)
    else:
        stage2 = scorer(index).score(sample)
        result = RewardResult(index=index, stage=2, score=stage2.total, stage1=stage2.stage1, stage2=stage2)
    store.put_result(batch_id, result)
    stored = store.get_result(batch_id, index)
    return stored if stored is not None else result
