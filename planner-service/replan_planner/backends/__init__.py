"""Planner backends behind one interface (`base.PlannerBackend`), and `build_backend` to pick one.

`openai` (any OpenAI-compatible chat endpoint, vLLM first) and `transformers` (in-process Qwen2.5-VL).
The transformers module imports torch only when a model loads, so importing this package stays cheap.
"""

from __future__ import annotations

import httpx

from replan_planner.backends.base import BackendState, Generation, GenerationInput, PlannerBackend
from replan_planner.metrics import PlannerMetrics
from replan_planner.settings import BackendKind, PlannerSettings

__all__ = ["BackendState", "Generation", "GenerationInput", "PlannerBackend", "build_backend"]


def build_backend(
    settings: PlannerSettings,
    *,
    metrics: PlannerMetrics | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> PlannerBackend:
    """The backend `settings.backend` names, constructed but not started."""
    common = {
        "model": settings.model,
        "min_pixels": settings.min_pixels,
        "max_pixels": settings.max_pixels,
        "grammar": settings.grammar.to_limits(),
    }
    if settings.backend is BackendKind.OPENAI:
        from replan_planner.backends.openai import OpenAIChatBackend

        return OpenAIChatBackend(settings.openai, metrics=metrics, transport=transport, **common)  # type: ignore[arg-type]
    from replan_planner.backends.transformers import TransformersBackend

    return TransformersBackend(settings.transformers, **common)  # type: ignore[arg-type]
