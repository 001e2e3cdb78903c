"""Settings shared by every service, read from the environment with pydantic-settings.

Each service subclasses `ServiceSettings` with its own prefix (`REPLAN_PLANNER_`, `REPLAN_EDITOR_`,
`REPLAN_GATEWAY_`, `REPLAN_WORKER_`) and nested groups (`REPLAN_EDITOR_IMAGES__MAX_PIXELS`). Nothing reads
the environment at import: the CLI or `create_app` builds settings and passes them down, and a bad value
fails at start-up naming the variable.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from replan_common.images import ImageLimits

DEFAULT_PORTS = {"gateway": 8000, "planner": 8100, "editor": 8200}


class ImageLimitSettings(BaseModel):
    """Limits on accepted images (decompression bombs, memory)."""

    max_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=40_000_000, ge=64 * 64)
    min_side: int = Field(default=8, ge=1)

    def to_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels, min_side=self.min_side)


class ServiceSettings(BaseSettings):
    """What every HTTP service has: where it listens, how it logs, how much it accepts."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    images: ImageLimitSettings = Field(default_factory=ImageLimitSettings)
