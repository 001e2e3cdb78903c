"""``reward`` queue (highest priority): score one sample of a stored reward batch.

Takes ids only (``batch_id``, ``index``); the inputs wait in the reward store (images are too big for
messages). Idempotent: a sample with a stored result is not scored again, and results are stored
set-if-absent. Stage 2 edits on the editor of the sample's shard (failing over while it is down) and
asks the judge from ``REPLAN_WORKER_JUDGE__*``; its own failures score 0 as the original does.
"""

from __future__ import annotations

from celery import Task, shared_task

from replan_eval.editor_client import FailoverEditor
from replan_eval.rewards.batches import SCORE_SAMPLE_TASK, score_one
from replan_eval.rewards.stage2 import Stage2Scorer
from replan_eval.tasks import _context

SCORE_BATCH_TASK = "replan.reward.score_batch"


@shared_task(bind=True, name=SCORE_SAMPLE_TASK)
def score_sample(self: Task, batch_id: str, index: int) -> float:
    """Returns the sample's reward."""
    settings = _context.settings_of(self.app)
    store = _context.reward_store(settings.reward_store_url, settings.reward_ttl_s)
    editors = _context.editors(settings, settings.editor_urls)

    def scorer(shard: int) -> Stage2Scorer:
        return Stage2Scorer(FailoverEditor.for_shard(editors, shard), _context.reward_judge(settings))

    return score_one(store, batch_id, index, scorer=scorer).score


@shared_task(bind=True, name=SCORE_BATCH_TASK)
def score_batch(self: Task, batch_id: str) -> int:
    """Queue every sample of a batch that has no result yet (a resubmit after lost tasks)."""
    settings = _context.settings_of(self.app)
    store = _context.reward_store(settings.reward_store_url, settings.reward_ttl_s)
    size, _ = store.batch_info(batch_id)
    missing = [i for i in range(size) if store.get_result(batch_id, i) is None]
    for index in missing:
        self.app.send_task(SCORE_SAMPLE_TASK, args=[batch_id, index])
    return len(missing)
