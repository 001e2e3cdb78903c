"""Edit sessions of the `replan edit` CLI: load once, edit many times, in-process or over HTTP.

`LocalSession` loads the region-edit pipeline (and, the first time a plan must be made, the in-process
planner: `replan_planner`'s use case with its tiny preset, or whatever `REPLAN_PLANNER_*` configures) once
and runs edits in this process. `RemoteSession` sends them to a running editor or gateway: with a plan to
`POST /v1/edit` as an event stream (so the progress bar follows the denoising steps), without one to the
gateway's `POST /v1/replan` (plan, then edit). Both return a `SessionEdit` the CLI writes to disk.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from PIL import Image

from replan_common.errors import ReplanError, ServiceUnavailable, UpstreamError, error_from_envelope
from replan_common.geometry import Size
from replan_common.images import ImageLimits, decode_image_b64, encode_png_b64
from replan_common.plan import RegionPlan
from replan_common.plan_parser import validate_plan_boxes
from replan_common.protocol import EditRequest, EditSettings, PlanResponse, ProgressEvent, ProgressStage
from replan_editor.client import EditorStreamClient
from replan_editor.settings import EditorSettings, Preset

logger = logging.getLogger(__name__)

#: Called with (step, total steps) after each denoising step; step 0 means "started, nothing done yet".
StepCallback = Callable[[int, int], None]

#: What the CLI tells the user when a plan is needed and nothing can make one.
NO_PLANNER_MESSAGE = (
    "no plan: pass --plan FILE (a plan JSON or raw planner output), --no-regions to edit with the "
    "instruction alone, or --url http://GATEWAY to have the gateway's planner make one"
)


class NoPlanner(ReplanError):
    status = 400
    type = "invalid_request_error"
    default_code = "plan_required"


@dataclass(frozen=True)
class SessionEdit:
    """One finished edit, as the CLI saves it."""

    image: Image.Image
    plan: RegionPlan
    settings: EditSettings
    timings_ms: dict[str, float]


class EditSession(Protocol):
    """Where `replan edit` runs its edits."""

    description: dict[str, Any]

    def edit(
        self,
        image: Image.Image,
        *,
        instruction: str,
        plan: RegionPlan | None,
        settings: EditSettings,
        on_step: StepCallback | None = None,
    ) -> SessionEdit: ...

    def close(self) -> None: ...


class InProcessPlanner:
    """The planner service's use case (`replan_planner.services`) in this process, on an event loop of its own."""

    def __init__(self, *, tiny: bool) -> None:
        import asyncio

        from prometheus_client import CollectorRegistry

        from replan_planner.metrics import PlannerMetrics
        from replan_planner.settings import PlannerSettings, Preset

        settings = PlannerSettings(preset=Preset.TINY) if tiny else PlannerSettings()
        self.model = settings.model
        self._loop = asyncio.new_event_loop()
        self._services = self._loop.run_until_complete(self._start(settings, PlannerMetrics(CollectorRegistry())))

    @staticmethod
    async def _start(settings: Any, metrics: Any) -> Any:
        import asyncio

        from replan_common.errors import ServiceUnavailable
        from replan_planner.services import start_services

        services = await start_services(settings, metrics=metrics)
        state = await services.backend.state()
        while state.status == "loading":
            await asyncio.sleep(0.05)
            state = await services.backend.state()
        if not state.ready:
            await services.aclose()
            raise ServiceUnavailable(
                f"the in-process planner is {state.status}: {state.detail or 'no detail'}", code="planner_unavailable"
            )
        return services

    def plan(self, image: Image.Image, instruction: str) -> PlanResponse:
        from replan_common.images import encode_png
        from replan_common.protocol import PlanOptions
        from replan_planner.planner import PlanInput

        request = PlanInput(image=encode_png(image), instruction=instruction, options=PlanOptions())
        response: PlanResponse = self._loop.run_until_complete(self._services.planner.plan(request))
        return response

    def close(self) -> None:
        self._loop.run_until_complete(self._services.aclose())
        self._loop.close()


class LocalSession:
    """The pipeline in this process, loaded once; the planner loaded the first time a plan is needed."""

    def __init__(self, settings: EditorSettings) -> None:
        from replan_editor.loading import load_pipeline

        self.settings = settings
        self.pipeline = load_pipeline(settings)
        self._planner: InProcessPlanner | None = None
        self.description: dict[str, Any] = {
            "mode": "in-process",
            "backbone": settings.backbone.value,
            "model": settings.resolved_model,
            "preset": settings.preset.value,
            "device": settings.resolved_device,
            "dtype": settings.resolved_dtype.value,
        }

    def edit(
        self,
        image: Image.Image,
        *,
        instruction: str,
        plan: RegionPlan | None,
        settings: EditSettings,
        on_step: StepCallback | None = None,
    ) -> SessionEdit:
        if plan is None:
            plan = self._plan(image, instruction)
        plan = validate_plan_boxes(plan, Size(image.width, image.height))
        resolved = self.pipeline.resolve_settings(settings)
        if on_step is not None:
            on_step(0, resolved.steps or 0)
        result = self.pipeline.edit(image, plan, resolved, on_step=on_step)
        return SessionEdit(image=result.image, plan=result.plan, settings=result.settings, timings_ms=result.timings_ms)

    def _plan(self, image: Image.Image, instruction: str) -> RegionPlan:
        if self._planner is None:
            self._planner = InProcessPlanner(tiny=self.settings.preset is Preset.TINY)
            self.description["planner_model"] = self._planner.model
        return self._planner.plan(image, instruction).plan

    def close(self) -> None:
        if self._planner is not None:
            self._planner.close()


class RemoteSession:
    """A running editor or gateway at `url`."""

    def __init__(self, url: str, *, timeout_s: float = 900.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._editor = EditorStreamClient(self.url, timeout_s=timeout_s, transport=transport)
        self._http = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout_s, connect=10.0), transport=transport
        )
        self._limits = ImageLimits()
        self.description: dict[str, Any] = {"mode": "remote", "url": self.url}

    def edit(
        self,
        image: Image.Image,
        *,
        instruction: str,
        plan: RegionPlan | None,
        settings: EditSettings,
        on_step: StepCallback | None = None,
    ) -> SessionEdit:
        image_b64 = encode_png_b64(image)
        if plan is None:
            return self._replan(image_b64, instruction, settings)

        def on_progress(event: ProgressEvent) -> None:
            if on_step is not None and event.stage in (ProgressStage.EDITING, ProgressStage.STEP):
                on_step(event.step or 0, event.total or 0)

        request = EditRequest(image=image_b64, plan=plan, settings=settings)
        response = self._editor.edit(request, on_progress=on_progress)
        edited = decode_image_b64(response.image, limits=self._limits, param="image")
        return SessionEdit(image=edited, plan=response.plan, settings=response.settings, timings_ms=response.timings_ms)

    def _replan(self, image_b64: str, instruction: str, settings: EditSettings) -> SessionEdit:
        """The gateway's `POST /v1/replan`: `{image, instruction, settings}` → `{plan: PlanResponse, image, ...}`."""
        body = {"image": image_b64, "instruction": instruction, "settings": settings.model_dump(exclude_none=True)}
        try:
            response = self._http.post("/v1/replan", json=body)
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"{self.url} is unreachable ({type(exc).__name__}); check that it is running", code="unreachable"
            ) from exc
        if response.status_code in (404, 405):
            raise NoPlanner(
                f"{self.url} has no /v1/replan (an editor, not a gateway?); " + NO_PLANNER_MESSAGE, param="--url"
            )
        if not response.is_success:
            try:
                payload: Any = response.json()
            except ValueError:
                payload = None
            raise error_from_envelope(response.status_code, payload)
        try:
            data = response.json()
            plan = PlanResponse.model_validate(data["plan"]).plan
            edited = decode_image_b64(data["image"], limits=self._limits, param="image")
            resolved = EditSettings.model_validate(data["settings"])
            timings = {str(k): float(v) for k, v in (data.get("timings_ms") or {}).items()}
        except (KeyError, TypeError, ValueError, ReplanError) as exc:
            raise UpstreamError(f"{self.url}/v1/replan answered in an unexpected shape ({exc})") from exc
        return SessionEdit(image=edited, plan=plan, settings=resolved, timings_ms=timings)

    def close(self) -> None:
        self._editor.close()
        self._http.close()
