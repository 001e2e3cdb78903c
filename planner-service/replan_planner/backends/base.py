"""The one interface every planner backend implements, and the values that cross it.

A backend turns (image, prompt text, generation options) into the model's raw answer and says which
pixel size the model saw the image at; it knows nothing of plans, boxes or HTTP. Lifecycle, as LitServe's
`setup` → `predict`: construct (cheap, no I/O) → `start()` (load the model or open the client; may take
minutes, so the service answers /healthz meanwhile) → `generate()` per request → `aclose()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from PIL import Image

from replan_common.geometry import Size
from replan_common.protocol import PlanMode

__all__ = ["BackendState", "Generation", "GenerationInput", "PlannerBackend"]


@dataclass(frozen=True)
class GenerationInput:
    """One planner call: the original image, the size the model should see it at, and the user turn's text."""

    image: Image.Image
    view: Size
    prompt: str
    mode: PlanMode
    max_new_tokens: int
    temperature: float | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Generation:
    """The model's answer, verbatim, with what is known about how it was produced."""

    text: str
    model: str
    #: The image size the model actually saw; its boxes are in this space.
    view: Size
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: "stop", or "length" when the token limit cut the answer off.
    finish_reason: str | None = None


@dataclass(frozen=True)
class BackendState:
    """Readiness of a backend: loaded / upstream reachable, with a human-readable detail."""

    ready: bool
    status: str  # "ready", "loading", "failed", "unreachable", "degraded"
    detail: str | None = None
    checks: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class PlannerBackend(Protocol):
    """What the planner service needs from a backend."""

    @property
    def name(self) -> str:
        """`openai` or `transformers`."""
        ...

    @property
    def model(self) -> str:
        """The model as configured (served name, directory or hub id)."""
        ...

    async def start(self) -> None:
        """Load the model / open clients. May return before loading finishes; `state()` tells."""
        ...

    async def state(self) -> BackendState:
        """Whether `generate` can be served now."""
        ...

    async def generate(self, request: GenerationInput) -> Generation:
        """The model's raw answer; raises a `ReplanError` (503 loading, 502/503/504 upstream) on failure."""
        ...

    async def aclose(self) -> None:
        """Release the model or the HTTP client."""
        ...
