"""`JobStore` on Redis: one hash per job (`replan:job:<id>`) and one Redis Stream for its events
(`replan:job:<id>:events`), both expiring `ttl_s` after the last change, plus a sorted set of the jobs not
yet finished (`replan:job:active`, scored by creation time) for recovery sweeps.

Each change runs as one Lua script (check status, set fields, XADD the event, refresh the TTL), so the record
and its log change together and a compare-and-set cannot race. Stream ids order the events and serve as
SSE event ids, so a late subscriber replays with XRANGE from any id it has seen.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

import redis

from replan_common.errors import BadRequest, ServiceUnavailable
from replan_common.jobs.models import JobEvent, JobRecord, JobStatus, utcnow
from replan_common.jobs.store import Applied, InvalidTransition, JobChange, JobNotFound, JobStore
from replan_common.protocol import ProgressEvent, ProgressStage

_EVENT_ID = re.compile(r"^\d+-\d+$")
_MAX_EVENTS = 10_000

# KEYS: hash, stream, active set. ARGV: allowed statuses (comma list), now, ttl, increment attempts (0/1), event JSON
# or "", stream max length, then field/value pairs to set.
_APPLY = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing'} end
local allowed = false
for s in string.gmatch(ARGV[1], '[^,]+') do
  if s == status then allowed = true end
end
if not allowed then return {'conflict', status} end
for i = 7, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[2])
local attempts = redis.call('HGET', KEYS[1], 'attempts') or '0'
if ARGV[4] == '1' then attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
local now_status = redis.call('HGET', KEYS[1], 'status')
local id = ''
if ARGV[5] ~= '' then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
                  'event', ARGV[5], 'status', now_status, 'at', ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
if now_status == 'done' or now_status == 'error' or now_status == 'cancelled' then
  redis.call('ZREM', KEYS[3], redis.call('HGET', KEYS[1], 'id'))
end
return {'ok', id, now_status, tostring(attempts)}
"""

_RECORD_JSON_FIELDS = ("spec", "plan", "result", "error")


class RedisJobStore(JobStore):
    """Jobs in Redis; safe for any number of gateways and workers."""

    def __init__(self, url: str, *, ttl_s: int = 7 * 24 * 3600, prefix: str = "replan:job:") -> None:
        self.url = url
        self.ttl_s = ttl_s
        self.prefix = prefix
        self._redis = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        self._apply = self._redis.register_script(_APPLY)

    def _keys(self, job_id: str) -> tuple[str, str]:
        key = self.prefix + job_id
        return key, key + ":events"

    @property
    def _active_key(self) -> str:
        return self.prefix + "active"  # job ids start with "job_", so no job has this key

    def create(self, record: JobRecord) -> JobRecord:
        key, stream = self._keys(record.id)
        fields = {
            "id": record.id,
            "kind": record.kind.value,
            "status": JobStatus.QUEUED.value,
            "created_at": record.created_at.isoformat(),
            "updated_at": record.updated_at.isoformat(),
            "attempts": str(record.attempts),
            "owner": record.owner,
            "request_id": record.request_id or "",
            "spec": record.spec.model_dump_json(),
        }
        event = ProgressEvent(job_id=record.id, stage=ProgressStage.QUEUED, message="queued")
        with _connection_errors():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(key, mapping=cast("dict[Any, Any]", fields))
            pipe.xadd(
                stream,
                {"event": event.model_dump_json(), "status": "queued", "at": record.created_at.isoformat()},
                maxlen=_MAX_EVENTS,
                approximate=True,
            )
            pipe.expire(key, self.ttl_s)
            pipe.expire(stream, self.ttl_s)
            pipe.zadd(self._active_key, {record.id: record.created_at.timestamp()})
            pipe.execute()
        return record.model_copy(update={"status": JobStatus.QUEUED})

    def get(self, job_id: str) -> JobRecord | None:
        key, _ = self._keys(job_id)
        with _connection_errors():
            raw = cast("dict[str, str]", self._redis.hgetall(key))
        if not raw or "status" not in raw:
            return None
        data: dict[str, object] = dict(raw)
        data["request_id"] = raw.get("request_id") or None
        for name in _RECORD_JSON_FIELDS:
            data[name] = json.loads(raw[name]) if raw.get(name) else None
        return JobRecord.model_validate(data)

    def apply(self, job_id: str, change: JobChange) -> Applied:
        key, stream = self._keys(job_id)
        pairs: list[str] = []
        for name, value in change.encoded_fields().items():
            pairs += [name, value]
        args = [
            ",".join(s.value for s in change.allowed_from),
            utcnow().isoformat(),
            str(self.ttl_s),
            "1" if change.increment_attempts else "0",
            change.event.model_dump_json() if change.event is not None else "",
            str(_MAX_EVENTS),
            *pairs,
        ]
        with _connection_errors():
            out = self._apply(keys=[key, stream, self._active_key], args=args)
        if out[0] == "missing":
            raise JobNotFound(f"no job {job_id} (it never existed or expired)", param="id")
        if out[0] == "conflict":
            raise InvalidTransition(job_id, JobStatus(out[1]), change.to)
        return Applied(event_id=out[1] or None, status=JobStatus(out[2]), attempts=int(out[3]))

    def events(self, job_id: str, *, after: str | None = None, limit: int = 1000) -> list[JobEvent]:
        _, stream = self._keys(job_id)
        if after is not None and not _EVENT_ID.match(after):
            raise BadRequest(
                f"event id {after!r} is not one this job's log issued (expected '<ms>-<seq>')",
                code="invalid_event_id",
                param="Last-Event-ID",
            )
        with _connection_errors():
            entries = cast(
                "list[tuple[str, dict[str, str]]]",
                self._redis.xrange(stream, min=f"({after}" if after else "-", max="+", count=limit),
            )
        return [_event(entry_id, fields) for entry_id, fields in entries]

    def active_job_ids(self, *, limit: int = 10_000) -> list[str]:
        with _connection_errors():
            ids = cast("list[str]", self._redis.zrange(self._active_key, 0, limit - 1))
            # Jobs that expired while active leave their id behind: drop those.
            pipe = self._redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.exists(self._keys(job_id)[0])
            alive = pipe.execute()
            gone = [job_id for job_id, exists in zip(ids, alive, strict=True) if not exists]
            if gone:
                self._redis.zrem(self._active_key, *gone)
        return [job_id for job_id, exists in zip(ids, alive, strict=True) if exists]

    def ping(self) -> None:
        with _connection_errors():
            self._redis.ping()

    def close(self) -> None:
        self._redis.close()


def _event(entry_id: str, fields: dict[str, str]) -> JobEvent:
    progress = ProgressEvent.model_validate_json(fields["event"])
    return JobEvent(
        **progress.model_dump(),
        id=entry_id,
        status=JobStatus(fields["status"]),
        at=datetime.fromisoformat(fields["at"]),
    )


@contextmanager
def _connection_errors() -> Iterator[None]:
    """Turn Redis connection failures into a 503 that names the store (never the URL: it may hold a password)."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ServiceUnavailable(
            f"the job store (Redis) is unreachable ({type(exc).__name__})",
            code="job_store_unavailable",
            retry_after_s=5,
        ) from exc
