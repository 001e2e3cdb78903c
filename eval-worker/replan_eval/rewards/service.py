"""`RewardService`: what ``POST /v1/rewards`` does, without the HTTP framework.

Stage 1 is a few regular expressions and a JSON parse per response, so it is computed right here (in a
worker thread, off the event loop) and answered at once. Stage 2 needs an edit and three judge calls per
sample: the batch goes into the reward store, one ``replan.reward.score_sample`` task per sample goes to
the ``reward`` queue (the highest priority), and the service polls the store until every sample has a
result or the wait runs out. Samples still unscored then get 0, as the original scores a failed edit,
and are listed in ``missing``; their tasks keep running and their late results are simply not used.
Waiting is an async sleep, so a long stage-2 batch holds no thread of the gateway.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from functools import partial

import anyio
import redis
from kombu.exceptions import KombuError

from replan_common.errors import BadRequest, ServiceUnavailable
from replan_eval.rewards.batches import TaskSender, submit_batch
from replan_eval.rewards.protocol import RewardSampleResult, RewardsRequest, RewardsResponse
from replan_eval.rewards.stage1 import score_stage1
from replan_eval.rewards.store import RewardBatchStore, RewardResult, open_reward_store
from replan_eval.settings import EvalSettings

logger = logging.getLogger(__name__)

__all__ = ["RewardService"]

#: What a broker or store outage raises: kombu (publishing), redis-py (Redis store), sqlite3, sockets.
_OUTAGES = (KombuError, redis.RedisError, sqlite3.Error, OSError)


class RewardService:
    """Scores reward batches: stage 1 in this process, stage 2 through the ``reward`` queue."""

    def __init__(
        self,
        *,
        sender: TaskSender,
        store: RewardBatchStore,
        timeout_s: float = 900.0,
        max_batch: int = 1024,
        poll_s: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sender = sender
        self._store = store
        self._timeout_s = timeout_s
        self._max_batch = max_batch
        self._poll_s = poll_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: EvalSettings) -> RewardService:
        """The broker and reward store of ``REPLAN_WORKER_*``, which the reward workers read too."""
        from replan_eval.celery_app import create_celery_app

        return cls(
            sender=create_celery_app(settings),
            store=open_reward_store(settings.reward_store_url, ttl_s=settings.reward_ttl_s),
            timeout_s=settings.reward_timeout_s,
            max_batch=settings.reward_max_batch,
        )

    def check(self, request: RewardsRequest) -> float:
        """Refuse what this server will not do; returns the stage-2 wait in seconds."""
        if len(request.samples) > self._max_batch:
            raise BadRequest(
                f"{len(request.samples)} samples is above this server's limit of {self._max_batch} per request; "
                "split the batch",
                code="batch_too_large",
                param="samples",
            )
        if request.timeout_s is not None and request.timeout_s > self._timeout_s:
            raise BadRequest(
                f"timeout_s {request.timeout_s:g} is above this server's limit of {self._timeout_s:g} s; "
                "ask for less or leave it out",
                code="timeout_too_long",
                param="timeout_s",
            )
        return request.timeout_s or self._timeout_s

    async def score(self, request: RewardsRequest) -> RewardsResponse:
        """Scores in input order; stage 2 returns when every sample is scored or the wait is over."""
        wait_s = self.check(request)
        started = self._clock()
        if request.stage == 1:
            response = await anyio.to_thread.run_sync(score_stage1_batch, request)
        else:
            response = await self._score_stage2(request, wait_s)
        elapsed_ms = (self._clock() - started) * 1000.0
        logger.info(
            "reward batch stage %s: %s samples in %.0f ms (%s missing)",
            request.stage,
            len(request.samples),
            elapsed_ms,
            len(response.missing),
        )
        return response.model_copy(update={"timings_ms": {**response.timings_ms, "total": elapsed_ms}})

    async def _score_stage2(self, request: RewardsRequest, wait_s: float) -> RewardsResponse:
        inputs = [sample.to_core() for sample in request.samples]
        try:
            batch_id = await anyio.to_thread.run_sync(partial(submit_batch, self._sender, self._store, inputs, stage=2))
        except _OUTAGES as exc:
            raise ServiceUnavailable(
                f"the reward queue or store cannot be reached ({type(exc).__name__}: {exc}); "
                "check REPLAN_WORKER_BROKER_URL and REPLAN_WORKER_REWARD_STORE_URL",
                code="reward_queue_unavailable",
                retry_after_s=5.0,
            ) from exc
        deadline = self._clock() + wait_s
        while True:
            try:
                found = await anyio.to_thread.run_sync(self._store.results, batch_id)
            except _OUTAGES as exc:
                raise ServiceUnavailable(
                    f"the reward store stopped answering while batch {batch_id} was scored "
                    f"({type(exc).__name__}: {exc})",
                    code="reward_store_unavailable",
                    retry_after_s=5.0,
                ) from exc
            if all(r is not None for r in found) or self._clock() >= deadline:
                break
            await anyio.sleep(self._poll_s)
        return stage2_response(batch_id, found, waited_s=wait_s)


def score_stage1_batch(request: RewardsRequest) -> RewardsResponse:
    """Stage 1 for every sample, in order (CPU only)."""
    results = []
    for index, sample in enumerate(request.samples):
        stage1 = score_stage1(sample.response)
        results.append(
            RewardSampleResult.from_result(RewardResult(index=index, stage=1, score=stage1.total, stage1=stage1))
        )
    return RewardsResponse(stage=1, scores=[r.score for r in results], results=results)


def stage2_response(batch_id: str, found: list[RewardResult | None], *, waited_s: float) -> RewardsResponse:
    """The reply for a stage-2 batch; samples without a result score 0 and are listed in ``missing``."""
    results = [
        RewardSampleResult.from_result(r) if r is not None else RewardSampleResult.timed_out(i, waited_s)
        for i, r in enumerate(found)
    ]
    missing = [i for i, r in enumerate(found) if r is None]
    if missing:
        logger.warning(
            "reward batch %s: %s of %s samples unscored after %.0f s; they score 0",
            batch_id,
            len(missing),
            len(found),
            waited_s,
        )
    return RewardsResponse(
        stage=2, batch_id=batch_id, scores=[r.score for r in results], results=results, missing=missing
    )
