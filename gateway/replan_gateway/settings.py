"""The gateway's settings: upstream pools, per-route timeouts, API keys, rate limits, image fetching, jobs.

Read from the environment with the prefix ``REPLAN_GATEWAY_`` (nested groups with ``__``, e.g.
``REPLAN_GATEWAY_RATE_LIMIT__REQUESTS_PER_WINDOW``), except ``REPLAN_AUTH_DISABLED``, which every serve
command honours. Where the job store lives is shared with the worker (``REPLAN_JOBS_*``,
`replan_common.jobs.settings`). Nothing reads the environment at import: `get_settings()` builds them once
(overridable in tests) and a bad value fails at start-up naming the variable. API keys are stored only as
SHA-256 digests; the keys themselves never appear in settings, files or logs.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import Enum
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from replan_common.settings import DEFAULT_PORTS, ServiceSettings

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def hash_api_key(key: str) -> str:
    """The digest the gateway stores for a key: hex SHA-256 of its UTF-8 bytes (`printf %s KEY | sha256sum`)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKey(BaseModel):
    """One client key, by digest; `rate_limit` overrides the default requests per window for this key."""

    name: str = Field(min_length=1, max_length=64, description="Shown in logs and metrics instead of the key.")
    sha256: str = Field(description="Hex SHA-256 of the key.")
    rate_limit: int | None = Field(default=None, ge=1, description="Requests per window; None: the default.")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if not _SHA256_HEX.match(value):
            raise ValueError("sha256 must be 64 hex digits: the SHA-256 of the key, never the key itself")
        return value


class AuthSettings(BaseModel):
    keys: list[ApiKey] = Field(default_factory=list, description="JSON list of {name, sha256, rate_limit}.")
    keys_file: Path | None = Field(default=None, description="JSON file with the same list (e.g. a mounted secret).")


class RateLimitSettings(BaseModel):
    """Fixed-window limit per API key on the routes that do work (plan, edit, replan, jobs, images)."""

    requests_per_window: int = Field(default=60, ge=1)
    window_s: int = Field(default=60, ge=1)
    enabled: bool = True


class RoutingSettings(BaseModel):
    """How the planner and editor pools are balanced and health-checked."""

    health_interval_s: float = Field(default=5.0, gt=0, description="Seconds between active /readyz checks.")
    health_timeout_s: float = Field(default=2.0, gt=0)
    cooldown_s: float = Field(
        default=10.0, ge=0, description="A worker that failed a call is skipped this long, then tried again."
    )


class TimeoutSettings(BaseModel):
    """Per-route upstream timeouts."""

    plan_s: float = Field(default=300.0, gt=0)
    edit_s: float = Field(default=900.0, gt=0)
    generations_s: float = Field(default=900.0, gt=0)
    info_s: float = Field(default=5.0, gt=0)


class FetchSettings(BaseModel):
    """Server-side fetching of image URLs: off unless hosts are allow-listed."""

    allow_hosts: list[str] = Field(
        default_factory=list, description="Host names (or *.domain) the gateway may fetch images from; empty: none."
    )
    allow_http: bool = Field(default=False, description="Also fetch plain http:// URLs from allowed hosts.")
    timeout_s: float = Field(default=10.0, gt=0)


class JobExecutor(str, Enum):
    """`celery`: jobs go to the `jobs` queue for a worker. `inline`: run in this process (tests, demos)."""

    CELERY = "celery"
    INLINE = "inline"


class GatewaySettings(ServiceSettings):
    """Everything the gateway process needs."""

    model_config = SettingsConfigDict(
        env_prefix="REPLAN_GATEWAY_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    port: int = Field(default=DEFAULT_PORTS["gateway"], ge=0, le=65535)
    planner_urls: list[str] = Field(default_factory=lambda: [f"http://127.0.0.1:{DEFAULT_PORTS['planner']}"])
    editor_urls: list[str] = Field(default_factory=lambda: [f"http://127.0.0.1:{DEFAULT_PORTS['editor']}"])
    auth_disabled: bool = Field(
        default=False,
        validation_alias=AliasChoices("REPLAN_AUTH_DISABLED", "REPLAN_GATEWAY_AUTH_DISABLED"),
        description="Serve without API keys. Only for local use; never the default.",
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    redis_url: SecretStr | None = Field(
        default=None, description="Redis for rate limits shared by all gateways; None: an in-process limiter."
    )
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    jobs_executor: JobExecutor = JobExecutor.CELERY
    max_images_per_request: int = Field(default=4, ge=1, le=16, description="Largest `n` of /v1/images/edits.")
    static_dir: Path | None = Field(default=None, description="Web page folder; None: the packaged static/ if any.")

    @field_validator("planner_urls", "editor_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        cleaned = [u.strip().rstrip("/") for u in urls if u.strip()]
        for url in cleaned:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) URL")
        if not cleaned:
            raise ValueError("at least one URL is needed")
        return cleaned

    @model_validator(mode="after")
    def _keys_unless_disabled(self) -> GatewaySettings:
        if not self.auth_disabled and not self.api_keys():
            raise ValueError(
                'no API keys configured: set REPLAN_GATEWAY_AUTH__KEYS=\'[{"name": ..., "sha256": ...}]\' or '
                "REPLAN_GATEWAY_AUTH__KEYS_FILE, or REPLAN_AUTH_DISABLED=1 for local use only"
            )
        return self

    def api_keys(self) -> list[ApiKey]:
        """Keys from the settings and the keys file together."""
        keys = list(self.auth.keys)
        if self.auth.keys_file is not None:
            try:
                raw = json.loads(self.auth.keys_file.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"cannot read the API keys file {self.auth.keys_file}: {exc}") from exc
            keys += [ApiKey.model_validate(item) for item in raw]
        return keys

    def resolved_static_dir(self) -> Path | None:
        """The web page folder to serve at `/`, when there is one."""
        folder = self.static_dir or Path(__file__).parent / "static"
        return folder if folder.is_dir() else None


@lru_cache
def get_settings() -> GatewaySettings:
    """The process's settings, read from the environment once; tests pass their own to `create_app`."""
    return GatewaySettings()
