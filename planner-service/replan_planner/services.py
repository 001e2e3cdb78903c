"""The planner's long-lived collaborators, built once per process by the app's lifespan (or the CLI).

`PlannerServices` holds the settings, the started backend, the `Planner` use case and the metrics; routes
reach it through `deps`. Nothing here knows HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from replan_planner.backends import PlannerBackend, build_backend
from replan_planner.metrics import PlannerMetrics
from replan_planner.planner import Planner
from replan_planner.settings import PlannerSettings

__all__ = ["PlannerServices", "start_services"]


@dataclass(frozen=True)
class PlannerServices:
    settings: PlannerSettings
    backend: PlannerBackend
    planner: Planner
    metrics: PlannerMetrics

    async def aclose(self) -> None:
        await self.backend.aclose()


async def start_services(
    settings: PlannerSettings, *, metrics: PlannerMetrics, transport: httpx.AsyncBaseTransport | None = None
) -> PlannerServices:
    """Build and start the backend (a transformers model keeps loading in the background).

    Args:
        transport: the httpx transport of the openai backend's client (tests replay recorded responses).
    """
    backend = build_backend(settings, metrics=metrics, transport=transport)
    await backend.start()
    planner = Planner(backend, settings=settings, metrics=metrics)
    return PlannerServices(settings=settings, backend=backend, planner=planner, metrics=metrics)
