"""The planner service's settings: `PlannerSettings`, read from `REPLAN_PLANNER_*` environment variables.

Owns every knob of the service and the `tiny` preset; nothing here is read at import. `create_app` or the
CLI builds one `PlannerSettings` and passes it down. Nested groups use `__`:
`REPLAN_PLANNER_OPENAI__BASE_URL`, `REPLAN_PLANNER_GRAMMAR__MAX_REGIONS`, `REPLAN_PLANNER_IMAGES__MAX_PIXELS`.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from replan_common.geometry import QWEN_VL_MIN_PIXELS
from replan_common.settings import DEFAULT_PORTS, ServiceSettings
from replan_planner.grammar import GrammarLimits

__all__ = [
    "RELEASED_CHECKPOINT",
    "TRAINING_MAX_PIXELS",
    "TRAINING_MIN_PIXELS",
    "BackendKind",
    "BoxSpace",
    "GrammarSettings",
    "OpenAISettings",
    "PlannerSettings",
    "Preset",
    "StructuredOutput",
    "TransformersSettings",
]

#: The released RePlan planner (Qwen2.5-VL-7B tuned with GRPO).
RELEASED_CHECKPOINT = "TainU/RePlan-Qwen2.5-VL-7B"
#: The image pixel bounds RePlan was trained with (replan-facts §4); the served processor must use the same.
TRAINING_MIN_PIXELS = 3136
TRAINING_MAX_PIXELS = 12_845_056
#: `model` value that builds the tiny random-weight Qwen2.5-VL instead of loading a checkpoint.
TINY_MODEL = "tiny"


class BackendKind(str, Enum):
    """Where the planner model runs: behind an OpenAI-compatible endpoint (vLLM), or in this process."""

    OPENAI = "openai"
    TRANSFORMERS = "transformers"


class Preset(str, Enum):
    """`tiny`: the random-weight Qwen2.5-VL in-process on CPU (tests, `replan up` without a GPU)."""

    TINY = "tiny"


class StructuredOutput(str, Enum):
    """How the openai backend asks the server to constrain the answer; servers differ, so it is a setting.

    - `off`: no constraint; plain parsing (OpenAI, Gemini and other hosted APIs reject unknown fields).
    - `grammar` / `regex`: vLLM >= 0.12 `structured_outputs: {grammar|regex}`; the whole answer
      (think, gen_image, region JSON) follows `PlanGrammar`.
    - `structural_tag`: vLLM `response_format` of type `structural_tag`: free text, then schema-valid JSON
      between `<region>` and `</region>`.
    - `guided_grammar` / `guided_regex`: the same as `grammar` / `regex` for vLLM < 0.12.
    """

    OFF = "off"
    GRAMMAR = "grammar"
    REGEX = "regex"
    STRUCTURAL_TAG = "structural_tag"
    GUIDED_GRAMMAR = "guided_grammar"
    GUIDED_REGEX = "guided_regex"


class BoxSpace(str, Enum):
    """The space of the boxes in the model's answer.

    - `pixels`: absolute pixels of the image as the model saw it, i.e. after the processor's resize
      (Qwen2.5-VL, RePlan). The service sends the image already resized to that view.
    - `norm1000`: 0..1000 on each axis, whatever the image size (Qwen2-VL-style grounding).
    """

    PIXELS = "pixels"
    NORM1000 = "norm1000"


class GrammarSettings(BaseModel):
    """Length bounds of a constrained answer (see `grammar.GrammarLimits`)."""

    max_regions: int = Field(default=8, ge=1, le=64)
    min_regions: int = Field(default=0, ge=0, le=64, description="1 forces a region (the tiny preset does).")
    max_think_chars: int | None = Field(default=None, ge=0, description="None: reasoning unbounded.")
    max_global_chars: int = Field(default=600, ge=1)
    max_hint_chars: int = Field(default=200, ge=1)
    max_coord_digits: int = Field(default=5, ge=1, le=6)
    allow_point: bool = True

    def to_limits(self) -> GrammarLimits:
        return GrammarLimits(**self.model_dump())


#: Bounds that make a random-weight model finish in a few hundred tokens.
TINY_GRAMMAR = GrammarSettings(
    max_regions=2, min_regions=1, max_think_chars=32, max_global_chars=32, max_hint_chars=16, max_coord_digits=2
)


class OpenAISettings(BaseModel):
    """The OpenAI-compatible upstream (vLLM serving the RePlan checkpoint, or any chat endpoint)."""

    base_url: str = Field(default="http://127.0.0.1:8000/v1", description="Up to and including /v1.")
    api_key: SecretStr | None = None
    timeout_s: float = Field(default=120.0, gt=0, description="Whole-request timeout of one attempt.")
    connect_timeout_s: float = Field(default=5.0, gt=0)
    ready_timeout_s: float = Field(default=3.0, gt=0, description="Timeout of the /readyz probe's GET /models.")
    max_attempts: int = Field(default=3, ge=1, le=10, description="Tries on 5xx, 429, timeouts, connect errors.")
    backoff_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=8.0, ge=0)
    structured_output: StructuredOutput = StructuredOutput.GRAMMAR
    send_mm_processor_kwargs: bool = Field(
        default=False,
        description="Also send min/max pixels per request (vLLM `mm_processor_kwargs`). The image is sent "
        "already resized to the model's view, so this only matters when the server's own limits are smaller.",
    )
    box_space: BoxSpace = BoxSpace.PIXELS
    image_format: str = Field(default="png", pattern="^(png|jpeg)$")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
        return url.rstrip("/")


class TransformersSettings(BaseModel):
    """The in-process backend: a Qwen2.5-VL checkpoint loaded with transformers."""

    device: str = "cpu"
    dtype: str = Field(default="auto", pattern="^(auto|float32|bfloat16|float16)$")
    local_files_only: bool = Field(default=False, description="Never reach the hub (HF_HUB_OFFLINE also works).")
    attn_implementation: str | None = None
    num_threads: int | None = Field(
        default=None,
        ge=1,
        description="torch intra-op threads while generating; None keeps torch's default. The tiny preset uses "
        "1: a tiny model gains nothing from threads and slows down 10x or more on a busy CPU.",
    )
    structured: bool = Field(default=True, description="Grammar-constrained decoding with xgrammar.")
    tiny_seed: int = 0
    tiny_dir: Path | None = Field(default=None, description="Where the tiny checkpoint is written; None: a temp dir.")


class PlannerSettings(ServiceSettings):
    """Everything the planner service needs; env prefix `REPLAN_PLANNER_`."""

    model_config = SettingsConfigDict(env_prefix="REPLAN_PLANNER_", env_nested_delimiter="__", extra="ignore")

    port: int = Field(default=DEFAULT_PORTS["planner"], ge=0, le=65535)
    preset: Preset | None = None
    backend: BackendKind = BackendKind.OPENAI
    model: str = Field(
        default=RELEASED_CHECKPOINT,
        description="openai: the served model name; transformers: a local directory or hub id ('tiny' builds "
        "the random-weight model).",
    )
    prompt_version: str = "v1"
    min_pixels: int = Field(default=TRAINING_MIN_PIXELS, ge=QWEN_VL_MIN_PIXELS)
    max_pixels: int = Field(default=TRAINING_MAX_PIXELS, ge=QWEN_VL_MIN_PIXELS)
    max_box_overhang: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Largest fraction of a box outside the image that is clipped."
    )
    grammar: GrammarSettings = Field(default_factory=GrammarSettings)
    openai: OpenAISettings = Field(default_factory=OpenAISettings)
    transformers: TransformersSettings = Field(default_factory=TransformersSettings)

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """The `tiny` preset fills whatever was not given explicitly (arguments or environment)."""
        preset = data.get("preset") if isinstance(data, dict) else None
        if getattr(preset, "value", preset) != Preset.TINY.value:
            return data
        tiny: dict[str, Any] = {
            "backend": BackendKind.TRANSFORMERS,
            "model": TINY_MODEL,
            "max_pixels": 128 * 28 * 28,  # a 316x316 view: 128 vision tokens, fast on CPU
            "grammar": TINY_GRAMMAR.model_dump(),
            "transformers": {"num_threads": 1},
        }
        merged = {**tiny, **data}
        for group in ("grammar", "transformers"):  # REPLAN_PLANNER_GRAMMAR__X overrides one value, not all
            if isinstance(data.get(group), dict):
                merged[group] = {**tiny[group], **data[group]}
        return merged

    @model_validator(mode="after")
    def _check(self) -> PlannerSettings:
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) must not exceed max_pixels ({self.max_pixels})")
        from replan_planner.prompts import available_versions

        if self.prompt_version not in available_versions():
            raise ValueError(
                f"prompt_version {self.prompt_version!r} does not exist; available: {', '.join(available_versions())}"
            )
        return self

    @property
    def structured_output_name(self) -> str:
        """How answers are constrained: the openai structured-output mode, or `xgrammar` / `off` in-process."""
        if self.backend is BackendKind.OPENAI:
            return self.openai.structured_output.value
        return "xgrammar" if self.transformers.structured else "off"

    @property
    def is_tiny(self) -> bool:
        return self.backend is BackendKind.TRANSFORMERS and self.model == TINY_MODEL
