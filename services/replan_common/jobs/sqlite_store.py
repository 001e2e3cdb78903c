"""`JobStore` in one SQLite file, for `replan up` without a Redis server.

The gateway and the worker are separate processes, so every change is a `BEGIN IMMEDIATE` transaction
(one writer at a time, across processes) in WAL mode (readers never block), and every call opens its own
short-lived connection (sqlite3 connections are not shared across threads). Event ids are the rowids of
one append-only table, so they order each job's events as Redis stream ids do. Expired jobs are purged
when new jobs are created.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from replan_common.errors import BadRequest, ServiceUnavailable
from replan_common.jobs.models import JobEvent, JobRecord, JobStatus, utcnow
from replan_common.jobs.store import Applied, InvalidTransition, JobChange, JobNotFound, JobStore
from replan_common.protocol import ProgressEvent, ProgressStage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT NOT NULL,
    request_id TEXT,
    spec TEXT NOT NULL,
    plan TEXT,
    result TEXT,
    error TEXT,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id, seq);
"""

_COLUMNS = ("status", "plan", "result", "error")


def sqlite_path(url: str) -> Path:
    """The file of a `sqlite:///relative/path` or `sqlite:////absolute/path` URL."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/jobs.sqlite)")
    return Path(url[len("sqlite:///") :])


class SqliteJobStore(JobStore):
    """Jobs in a SQLite file; safe for a gateway and workers on one machine."""

    def __init__(self, path: str | Path, *, ttl_s: int = 7 * 24 * 3600, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.ttl_s = ttl_s
        self.busy_timeout_s = busy_timeout_s
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
        except sqlite3.Error as exc:
            raise _unavailable(exc) from exc
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn
        except sqlite3.OperationalError as exc:
            raise _unavailable(exc) from exc
        finally:
            conn.close()

    def create(self, record: JobRecord) -> JobRecord:
        now = time.time()
        event = ProgressEvent(job_id=record.id, stage=ProgressStage.QUEUED, message="queued")
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            expired = "SELECT id FROM jobs WHERE expires_at < ?"
            conn.execute(f"DELETE FROM job_events WHERE job_id IN ({expired})", (now,))
            conn.execute("DELETE FROM jobs WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO jobs (id, kind, status, created_at, updated_at, attempts, owner, request_id, spec,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.kind.value,
                    JobStatus.QUEUED.value,
                    record.created_at.isoformat(),
                    record.updated_at.isoformat(),
                    record.attempts,
                    record.owner,
                    record.request_id,
                    record.spec.model_dump_json(),
                    now + self.ttl_s,
                ),
            )
            conn.execute(
                "INSERT INTO job_events (job_id, status, at, event) VALUES (?, ?, ?, ?)",
                (record.id, JobStatus.QUEUED.value, record.created_at.isoformat(), event.model_dump_json()),
            )
            conn.execute("COMMIT")
        return record.model_copy(update={"status": JobStatus.QUEUED})

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute("SELECT * FROM jobs WHERE id = ? AND expires_at >= ?", (job_id, time.time())).fetchone()
        if row is None:
            return None
        data = dict(row)
        del data["expires_at"]
        for name in ("spec", "plan", "result", "error"):
            data[name] = json.loads(data[name]) if data[name] else None
        return JobRecord.model_validate(data)

    def apply(self, job_id: str, change: JobChange) -> Applied:
        now_iso = utcnow().isoformat()
        fields = change.encoded_fields()
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT status, attempts FROM jobs WHERE id = ? AND expires_at >= ?", (job_id, time.time())
                ).fetchone()
                if row is None:
                    raise JobNotFound(f"no job {job_id} (it never existed or expired)", param="id")
                current = JobStatus(row[0])
                if current not in change.allowed_from:
                    raise InvalidTransition(job_id, current, change.to)
                assignments = [f"{name} = ?" for name in _COLUMNS if name in fields]
                values: list[object] = [fields[name] for name in _COLUMNS if name in fields]
                attempts = int(row[1]) + (1 if change.increment_attempts else 0)
                conn.execute(
                    f"UPDATE jobs SET {', '.join([*assignments, 'updated_at = ?', 'attempts = ?', 'expires_at = ?'])}"
                    " WHERE id = ?",
                    (*values, now_iso, attempts, time.time() + self.ttl_s, job_id),
                )
                status = change.to or current
                event_id: str | None = None
                if change.event is not None:
                    cursor = conn.execute(
                        "INSERT INTO job_events (job_id, status, at, event) VALUES (?, ?, ?, ?)",
                        (job_id, status.value, now_iso, change.event.model_dump_json()),
                    )
                    event_id = str(cursor.lastrowid)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return Applied(event_id=event_id, status=status, attempts=attempts)

    def events(self, job_id: str, *, after: str | None = None, limit: int = 1000) -> list[JobEvent]:
        if after is not None and not after.isdigit():
            raise BadRequest(
                f"event id {after!r} is not one this job's log issued (expected an integer)",
                code="invalid_event_id",
                param="Last-Event-ID",
            )
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT seq, status, at, event FROM job_events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, int(after or 0), limit),
            ).fetchall()
        return [
            JobEvent(
                **ProgressEvent.model_validate_json(event).model_dump(),
                id=str(seq),
                status=JobStatus(status),
                at=datetime.fromisoformat(at),
            )
            for seq, status, at, event in rows
        ]

    def active_job_ids(self, *, limit: int = 10_000) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT id FROM jobs WHERE status IN ('queued', 'planning', 'editing') AND expires_at >= ?"
                " ORDER BY created_at LIMIT ?",
                (time.time(), limit),
            ).fetchall()
        return [row[0] for row in rows]

    def ping(self) -> None:
        with self._connect() as conn:
            conn.execute("SELECT 1").fetchone()


def _unavailable(exc: sqlite3.Error) -> ServiceUnavailable:
    return ServiceUnavailable(f"the job store (SQLite) failed: {exc}", code="job_store_unavailable", retry_after_s=2)
