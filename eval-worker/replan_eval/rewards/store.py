"""Where reward batches wait between the gateway and the workers: inputs in, one result per sample out.

Rollout images are too large for queue messages, so the gateway stores a batch here and queues only
``(batch_id, index)`` pairs; each worker task reads its input, scores it and stores the result once
(set-if-absent, so a redelivered task cannot overwrite or duplicate a result). The gateway polls for the
results in order. Two implementations behind one interface: `RedisRewardStore` (deployment; hashes with
a TTL) and `SqliteRewardStore` (one machine without Redis). `open_reward_store` picks by URL.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import redis
from pydantic import BaseModel, ConfigDict

from replan_common.errors import NotFound
from replan_eval.rewards.stage1 import Stage1Score
from replan_eval.rewards.stage2 import RewardInput, Stage2Score

__all__ = [
    "RedisRewardStore",
    "RewardBatchNotFound",
    "RewardBatchStore",
    "RewardResult",
    "SqliteRewardStore",
    "open_reward_store",
]

RewardStage = Literal[1, 2]


class RewardBatchNotFound(NotFound):
    default_code = "reward_batch_not_found"


class RewardResult(BaseModel):
    """One sample's reward: ``score`` is the number a trainer uses; the rest is per-sample detail."""

    model_config = ConfigDict(frozen=True)

    index: int
    stage: RewardStage
    score: float
    stage1: Stage1Score
    stage2: Stage2Score | None = None


class RewardBatchStore(ABC):
    """Batch inputs and per-sample results."""

    @abstractmethod
    def create_batch(self, inputs: Sequence[RewardInput], *, stage: RewardStage) -> str:
        """Store a batch; returns its id."""

    @abstractmethod
    def batch_info(self, batch_id: str) -> tuple[int, RewardStage]:
        """``(size, stage)``; raises `RewardBatchNotFound` when unknown or expired."""

    @abstractmethod
    def get_input(self, batch_id: str, index: int) -> RewardInput: ...

    @abstractmethod
    def put_result(self, batch_id: str, result: RewardResult) -> bool:
        """Store unless a result for that index is already there; True when stored."""

    @abstractmethod
    def get_result(self, batch_id: str, index: int) -> RewardResult | None: ...

    def results(self, batch_id: str) -> list[RewardResult | None]:
        size, _ = self.batch_info(batch_id)
        return [self.get_result(batch_id, i) for i in range(size)]

    def wait(self, batch_id: str, *, timeout_s: float, poll_s: float = 0.2) -> list[RewardResult]:
        """All results in input order; raises `TimeoutError` naming how many are missing."""
        deadline = time.monotonic() + timeout_s
        while True:
            results = self.results(batch_id)
            if all(r is not None for r in results):
                return [r for r in results if r is not None]
            if time.monotonic() >= deadline:
                missing = sum(r is None for r in results)
                raise TimeoutError(f"reward batch {batch_id}: {missing} of {len(results)} results still missing")
            time.sleep(poll_s)


def _new_id() -> str:
    return uuid.uuid4().hex


class RedisRewardStore(RewardBatchStore):
    """Keys ``replan:reward:<id>:meta|in|out`` (hashes), all expiring after ``ttl_s``."""

    def __init__(self, client: redis.Redis, *, ttl_s: int = 24 * 3600, prefix: str = "replan:reward") -> None:
        self._redis = client
        self._ttl_s = ttl_s
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, ttl_s: int = 24 * 3600) -> RedisRewardStore:
        return cls(redis.Redis.from_url(url), ttl_s=ttl_s)

    def _key(self, batch_id: str, part: str) -> str:
        return f"{self._prefix}:{batch_id}:{part}"

    def create_batch(self, inputs: Sequence[RewardInput], *, stage: RewardStage) -> str:
        batch_id = _new_id()
        pipe = self._redis.pipeline(transaction=True)
        if inputs:
            pipe.hset(self._key(batch_id, "in"), mapping={str(i): x.model_dump_json() for i, x in enumerate(inputs)})
        pipe.hset(self._key(batch_id, "meta"), mapping={"size": len(inputs), "stage": stage})
        for part in ("meta", "in"):
            pipe.expire(self._key(batch_id, part), self._ttl_s)
        pipe.execute()
        return batch_id

    def batch_info(self, batch_id: str) -> tuple[int, RewardStage]:
        meta = self._redis.hgetall(self._key(batch_id, "meta"))
        if not meta:
            raise RewardBatchNotFound(f"reward batch {batch_id} does not exist or has expired", param="batch_id")
        stage = int(meta[b"stage"])
        return int(meta[b"size"]), 1 if stage == 1 else 2

    def get_input(self, batch_id: str, index: int) -> RewardInput:
        raw = self._redis.hget(self._key(batch_id, "in"), str(index))
        if raw is None:
            raise RewardBatchNotFound(f"reward batch {batch_id} has no input {index}", param="index")
        return RewardInput.model_validate_json(raw)

    def put_result(self, batch_id: str, result: RewardResult) -> bool:
        key = self._key(batch_id, "out")
        stored = bool(self._redis.hsetnx(key, str(result.index), result.model_dump_json()))
        self._redis.expire(key, self._ttl_s)
        return stored

    def get_result(self, batch_id: str, index: int) -> RewardResult | None:
        raw = self._redis.hget(self._key(batch_id, "out"), str(index))
        return None if raw is None else RewardResult.model_validate_json(raw)

    def results(self, batch_id: str) -> list[RewardResult | None]:
        # One round trip per poll, not one per sample: the gateway polls large batches several times a second.
        size, _ = self.batch_info(batch_id)
        if size == 0:
            return []
        raws = self._redis.hmget(self._key(batch_id, "out"), [str(i) for i in range(size)])
        return [None if raw is None else RewardResult.model_validate_json(raw) for raw in raws]


_SCHEMA = """
CREATE TABLE IF NOT EXISTS reward_batches (id TEXT PRIMARY KEY, size INTEGER, stage INTEGER, expires_at REAL);
CREATE TABLE IF NOT EXISTS reward_inputs (batch_id TEXT, idx INTEGER, body TEXT, PRIMARY KEY (batch_id, idx));
CREATE TABLE IF NOT EXISTS reward_results (batch_id TEXT, idx INTEGER, body TEXT, PRIMARY KEY (batch_id, idx));
"""


class SqliteRewardStore(RewardBatchStore):
    """Batches in one SQLite file (WAL), safe across the gateway's and workers' processes."""

    def __init__(self, path: Path, *, ttl_s: int = 24 * 3600) -> None:
        self.path = path
        self._ttl_s = ttl_s
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def create_batch(self, inputs: Sequence[RewardInput], *, stage: RewardStage) -> str:
        batch_id = _new_id()
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            for table in ("reward_inputs", "reward_results"):
                db.execute(
                    f"DELETE FROM {table} WHERE batch_id IN (SELECT id FROM reward_batches WHERE expires_at < ?)",
                    (now,),
                )
            db.execute("DELETE FROM reward_batches WHERE expires_at < ?", (now,))
            db.execute(
                "INSERT INTO reward_batches VALUES (?, ?, ?, ?)", (batch_id, len(inputs), stage, now + self._ttl_s)
            )
            db.executemany(
                "INSERT INTO reward_inputs VALUES (?, ?, ?)",
                [(batch_id, i, x.model_dump_json()) for i, x in enumerate(inputs)],
            )
            db.execute("COMMIT")
        return batch_id

    def batch_info(self, batch_id: str) -> tuple[int, RewardStage]:
        with self._connect() as db:
            row = db.execute(
                "SELECT size, stage FROM reward_batches WHERE id = ? AND expires_at >= ?", (batch_id, time.time())
            ).fetchone()
        if row is None:
            raise RewardBatchNotFound(f"reward batch {batch_id} does not exist or has expired", param="batch_id")
        return int(row[0]), 1 if int(row[1]) == 1 else 2

    def get_input(self, batch_id: str, index: int) -> RewardInput:
        with self._connect() as db:
            row = db.execute(
                "SELECT body FROM reward_inputs WHERE batch_id = ? AND idx = ?", (batch_id, index)
            ).fetchone()
        if row is None:
            raise RewardBatchNotFound(f"reward batch {batch_id} has no input {index}", param="index")
        return RewardInput.model_validate_json(row[0])

    def put_result(self, batch_id: str, result: RewardResult) -> bool:
        with self._connect() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO reward_results VALUES (?, ?, ?)",
                (batch_id, result.index, result.model_dump_json()),
            )
            return cursor.rowcount == 1

    def get_result(self, batch_id: str, index: int) -> RewardResult | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT body FROM reward_results WHERE batch_id = ? AND idx = ?", (batch_id, index)
            ).fetchone()
        return None if row is None else RewardResult.model_validate_json(row[0])

    def results(self, batch_id: str) -> list[RewardResult | None]:
        size, _ = self.batch_info(batch_id)
        with self._connect() as db:
            rows = db.execute("SELECT idx, body FROM reward_results WHERE batch_id = ?", (batch_id,)).fetchall()
        found = {int(idx): RewardResult.model_validate_json(body) for idx, body in rows}
        return [found.get(i) for i in range(size)]


def open_reward_store(url: str, *, ttl_s: int = 24 * 3600) -> RewardBatchStore:
    """``redis://…`` / ``rediss://…`` / ``unix://…`` or ``sqlite:///path`` (``sqlite:////abs/path``)."""
    if url.startswith("sqlite:///"):
        return SqliteRewardStore(Path(url[len("sqlite:///") :]), ttl_s=ttl_s)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisRewardStore.from_url(url, ttl_s=ttl_s)
    raise ValueError(f"unsupported reward store URL {url!r}: use redis://… or sqlite:///path")
