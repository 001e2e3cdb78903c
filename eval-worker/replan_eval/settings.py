"""`EvalSettings`: the worker's configuration, from ``REPLAN_WORKER_*`` environment variables.

Nested groups use ``__`` (``REPLAN_WORKER_JUDGE__MODEL``). Keys are `SecretStr`. Nothing reads the
environment at import: the CLI, the Celery app factory or a test builds the settings (`get_settings`
caches one per process and can be cleared), and a bad value fails at start-up naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from replan_eval.judge.factory import JudgeProvider

__all__ = ["EvalSettings", "JudgeProvider", "JudgeSettings", "get_settings"]

_BROKER_SCHEMES = ("redis://", "rediss://", "unix://", "sqla+sqlite:///", "memory://")
_BACKEND_SCHEMES = ("redis://", "rediss://", "unix://", "db+sqlite:///", "cache+memory://")


class JudgeSettings(BaseModel):
    """Which VLM judges, and how patiently (``REPLAN_WORKER_JUDGE__*``)."""

    provider: JudgeProvider = JudgeProvider.OPENAI
    base_url: str | None = Field(
        default="http://127.0.0.1:8000/v1",
        description="OpenAI-compatible API root with /v1; for Gemini, None means the public endpoint.",
    )
    model: str = "Qwen/Qwen2.5-VL-72B-Instruct"
    api_key: SecretStr | None = None
    max_tokens: int = Field(default=1024, ge=16, le=65536)
    timeout_s: float = Field(default=300.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    concurrency: int = Field(default=4, ge=1, le=256, description="Judge calls in flight per worker process.")


class EvalSettings(BaseSettings):
    """``REPLAN_WORKER_BROKER_URL``, ``REPLAN_WORKER_EDITOR_URLS='["http://e1:8200","http://e2:8200"]'``, …"""

    model_config = SettingsConfigDict(env_prefix="REPLAN_WORKER_", env_nested_delimiter="__", extra="ignore")

    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis://… in deployment; sqla+sqlite:///path.sqlite for one machine without Redis.",
    )
    result_backend: str = Field(
        default="redis://127.0.0.1:6379/1", description="redis://… or db+sqlite:///path.sqlite."
    )
    planner_url: str = "http://127.0.0.1:8100"
    editor_urls: list[str] = Field(default_factory=lambda: ["http://127.0.0.1:8200"], min_length=1)
    service_api_key: SecretStr | None = Field(default=None, description="Bearer key for our own services.")
    planner_timeout_s: float = Field(default=300.0, gt=0)
    editor_timeout_s: float = Field(default=900.0, gt=0)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    runs_dir: Path = Field(default=Path("runs"), description="Where benchmark runs live.")
    reward_store_url: str = Field(
        default="redis://127.0.0.1:6379/2",
        description="Where reward batches and their scores wait: redis://… or sqlite:///path.sqlite.",
    )
    reward_ttl_s: int = Field(default=24 * 3600, ge=60)
    reward_timeout_s: float = Field(
        default=900.0,
        gt=0,
        le=24 * 3600,
        description="How long POST /v1/rewards waits for a stage-2 batch; samples still unscored then get 0.",
    )
    reward_max_batch: int = Field(default=1024, ge=1, le=65536, description="Most samples in one reward request.")
    concurrency: int = Field(default=4, ge=1, le=512, description="Worker processes (celery -c).")
    task_time_limit_s: int = Field(default=3600, ge=10, description="Hard limit for any one task.")
    visibility_timeout_s: int = Field(
        default=4 * 3600, ge=60, description="Redis redelivers an unacknowledged task after this; above the limit."
    )
    task_max_retries: int = Field(default=5, ge=0, le=100)
    retry_backoff_max_s: int = Field(default=300, ge=1)

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, url: str) -> str:
        if not url.startswith(_BROKER_SCHEMES):
            raise ValueError(f"REPLAN_WORKER_BROKER_URL must start with one of {', '.join(_BROKER_SCHEMES)}")
        return url

    @field_validator("result_backend")
    @classmethod
    def _backend_scheme(cls, url: str) -> str:
        if not url.startswith(_BACKEND_SCHEMES):
            raise ValueError(f"REPLAN_WORKER_RESULT_BACKEND must start with one of {', '.join(_BACKEND_SCHEMES)}")
        return url

    @field_validator("reward_store_url")
    @classmethod
    def _reward_store_scheme(cls, url: str) -> str:
        if not url.startswith(("redis://", "rediss://", "unix://", "sqlite:///")):
            raise ValueError(
                "REPLAN_WORKER_REWARD_STORE_URL must start with redis://, rediss://, unix:// or sqlite:///"
            )
        return url

    @field_validator("planner_url", "editor_urls")
    @classmethod
    def _http_urls(cls, value: str | list[str]) -> str | list[str]:
        for url in [value] if isinstance(value, str) else value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"service URLs must start with http:// or https://, got {url!r}")
        return value

    @model_validator(mode="after")
    def _visibility_above_time_limit(self) -> EvalSettings:
        # A task still running when the visibility timeout expires is delivered a second time.
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                f"REPLAN_WORKER_VISIBILITY_TIMEOUT_S ({self.visibility_timeout_s}) must be above "
                f"REPLAN_WORKER_TASK_TIME_LIMIT_S ({self.task_time_limit_s}), or long tasks run twice"
            )
        return self


@lru_cache
def get_settings() -> EvalSettings:
    """The process's settings, read once; tests call ``get_settings.cache_clear()``."""
    return EvalSettings()
