"""The editor worker's settings: which pipeline it serves, on which device, and how it queues work.

Read from the environment with the prefix ``REPLAN_EDITOR_`` (nested groups with ``__``, e.g.
``REPLAN_EDITOR_IMAGES__MAX_PIXELS``). Nothing reads the environment at import: the CLI or `create_app`
builds an `EditorSettings` and passes it down, and a bad value fails at start-up naming the variable.
Preset-dependent defaults (device, dtype, warm-up size) are resolved by the `resolved_*` properties so an
explicit value always wins.
"""

from __future__ import annotations

from enum import Enum

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from replan_common.protocol import Backbone
from replan_common.settings import DEFAULT_PORTS, ServiceSettings

#: Checkpoints loaded when `model` is not set (hub ids; a local path works the same way).
DEFAULT_MODELS: dict[Backbone, str] = {
    Backbone.FLUX_KONTEXT: "black-forest-labs/FLUX.1-Kontext-dev",
    Backbone.QWEN_IMAGE_EDIT: "Qwen/Qwen-Image-Edit",
}


class Preset(str, Enum):
    """`default`: real weights from `model`. `tiny`: random-weight tiny pipeline on CPU (tests, demos)."""

    DEFAULT = "default"
    TINY = "tiny"


class WarmupMode(str, Enum):
    """When to run one small edit after loading: `auto` = only when `compile` is on."""

    AUTO = "auto"
    ALWAYS = "always"
    NEVER = "never"


class DType(str, Enum):
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


class EditorSettings(ServiceSettings):
    """Everything one editor worker process needs; one process serves one device."""

    model_config = SettingsConfigDict(env_prefix="REPLAN_EDITOR_", env_nested_delimiter="__", extra="ignore")

    port: int = Field(default=DEFAULT_PORTS["editor"], ge=0, le=65535)
    backbone: Backbone = Backbone.FLUX_KONTEXT
    preset: Preset = Preset.DEFAULT
    model: str | None = Field(
        default=None, description="Local path or hub id of the diffusers checkpoint; None: the backbone's default."
    )
    device: str | None = Field(default=None, description="torch device, e.g. cuda:1; None: cuda:0, or cpu for tiny.")
    dtype: DType | None = Field(default=None, description="None: bfloat16, or float32 for tiny.")
    local_files_only: bool = Field(default=False, description="Never contact the model hub while loading.")
    tiny_seed: int = Field(default=0, ge=0, description="Seed of the tiny preset's random weights.")
    num_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch intra-op threads (process-wide). None: 1 for tiny (a tiny model gains nothing from "
        "threads and runs 10-30x slower with them on a busy CPU), torch's default otherwise.",
    )
    compile: bool = Field(default=False, description="torch.compile the transformer (then warm-up runs).")
    warmup: WarmupMode = WarmupMode.AUTO
    warmup_size_px: int | None = Field(
        default=None, ge=16, le=2048, description="Side of the square warm-up image; None: 1024, or 64 for tiny."
    )
    warmup_sizes: list[str] = Field(
        default_factory=list,
        description='Warm-up image sizes "WxH", one edit each (e.g. one per resolution bucket you serve, since a '
        "compiled model specialises per shape); empty: one square of warmup_size_px.",
    )
    warmup_steps: int = Field(default=2, ge=1, le=50)
    max_queue: int = Field(
        default=8, ge=0, description="Edits that may wait while one runs; one more gets 429 queue_full."
    )
    queue_retry_after_s: float = Field(default=5.0, gt=0, description="Retry-After sent with queue_full.")
    oom_retry_after_s: float = Field(default=10.0, gt=0, description="Retry-After sent with gpu_out_of_memory.")
    loading_retry_after_s: float = Field(default=10.0, gt=0, description="Retry-After while the model loads.")
    redis_url: SecretStr | None = Field(
        default=None, description="When set, progress events are also published on Redis pub/sub."
    )
    sse_keepalive_s: float = Field(default=10.0, gt=0, description="SSE comment interval while a job waits.")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str | None) -> str | None:
        if value is None:
            return None
        kind = value.split(":", 1)[0]
        if kind not in ("cpu", "cuda", "mps", "xpu"):
            raise ValueError(f"device {value!r} is not a torch device; use cpu, cuda or cuda:N")
        return value

    @property
    def resolved_device(self) -> str:
        if self.device is not None:
            return self.device
        return "cpu" if self.preset is Preset.TINY else "cuda:0"

    @property
    def resolved_dtype(self) -> DType:
        if self.dtype is not None:
            return self.dtype
        return DType.FLOAT32 if self.preset is Preset.TINY else DType.BFLOAT16

    @property
    def resolved_num_threads(self) -> int | None:
        if self.num_threads is not None:
            return self.num_threads
        return 1 if self.preset is Preset.TINY else None

    @property
    def resolved_model(self) -> str:
        """What `/v1/info` reports as the model: the checkpoint, or `tiny-<backbone>`."""
        if self.preset is Preset.TINY:
            return f"tiny-{self.backbone.value}"
        return self.model or DEFAULT_MODELS[self.backbone]

    @field_validator("warmup_sizes")
    @classmethod
    def _sizes(cls, sizes: list[str]) -> list[str]:
        for size in sizes:
            width, sep, height = size.lower().partition("x")
            sides = (width, height) if sep and width.isdigit() and height.isdigit() else ()
            if not sides or not all(16 <= int(side) <= 4096 for side in sides):
                raise ValueError(f"warm-up size {size!r} is not WxH with sides in [16, 4096], e.g. 1024x1024")
        return sizes

    @property
    def resolved_warmup_sizes(self) -> list[tuple[int, int]]:
        """(width, height) of each warm-up edit."""
        if self.warmup_sizes:
            return [(int(w), int(h)) for w, _, h in (size.lower().partition("x") for size in self.warmup_sizes)]
        side = self.warmup_size_px if self.warmup_size_px is not None else 64 if self.preset is Preset.TINY else 1024
        return [(side, side)]

    @property
    def warmup_enabled(self) -> bool:
        if self.warmup is WarmupMode.AUTO:
            return self.compile
        return self.warmup is WarmupMode.ALWAYS
