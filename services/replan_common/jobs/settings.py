"""Settings for async jobs, shared by the gateway (which creates and reads jobs) and the worker (which runs
them): where the job store is, how long jobs are kept, and how patiently a job waits out an upstream outage.

One prefix, `REPLAN_JOBS_`, read by both processes, so a deployment sets the store once for both. Which
planner and editor a job calls is each process's own setting (the gateway's pools, the worker's URLs).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from replan_common.jobs.redis_store import RedisJobStore
from replan_common.jobs.sqlite_store import SqliteJobStore, sqlite_path
from replan_common.jobs.store import JobStore


class JobsSettings(BaseSettings):
    """`REPLAN_JOBS_STORE_URL` etc."""

    model_config = SettingsConfigDict(env_prefix="REPLAN_JOBS_", env_nested_delimiter="__", extra="ignore")

    store_url: str = Field(
        default="redis://127.0.0.1:6379/3",
        description="redis://host:port/db, or sqlite:///path/to/jobs.sqlite for a single machine.",
    )
    ttl_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="Jobs and their events expire this long after their last change."
    )
    upstream_retries: int = Field(
        default=3, ge=0, le=20, description="Times a job waits and retries when the planner or editor is unavailable."
    )
    upstream_retry_delay_s: float = Field(default=5.0, ge=0)

    @field_validator("store_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://", "sqlite:///")):
            raise ValueError("REPLAN_JOBS_STORE_URL must start with redis://, rediss://, unix:// or sqlite:///")
        return url


@lru_cache
def get_jobs_settings() -> JobsSettings:
    """The process's job settings, read once; tests call `get_jobs_settings.cache_clear()`."""
    return JobsSettings()


def open_job_store(url: str, *, ttl_s: int = 7 * 24 * 3600) -> JobStore:
    """The store for a URL: Redis for redis:// and unix://, SQLite for sqlite:///."""
    if url.startswith("sqlite:///"):
        return SqliteJobStore(sqlite_path(url), ttl_s=ttl_s)
    return RedisJobStore(url, ttl_s=ttl_s)
