"""What the gateway's synchronous routes call: check the input, route to a planner or editor, shape the answer.

`ReplanService` owns the planner and editor pools and the image door (`ImageInput`); it plans, edits,
plans-then-edits, answers the OpenAI images route (`n` edits of one plan, spread over the editors) and
proxies the original reward route. It knows no HTTP framework; errors are raised, never returned.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from replan_common import __version__
from replan_common.errors import BadRequest, ReplanError
from replan_common.http.client import parse_reply
from replan_common.protocol import (
    Backbone,
    EditRequest,
    EditResponse,
    ImagesGenerationsRequest,
    ImagesGenerationsResponse,
    PlanRequest,
    PlanResponse,
)
from replan_gateway.image_input import ImageInput
from replan_gateway.protocol import (
    GatewayInfo,
    ImageData,
    ImagesEditRequest,
    ImagesResponse,
    Limits,
    PoolWorker,
    ReplanRequest,
    ReplanResponse,
)
from replan_gateway.routing import WorkerPool
from replan_gateway.settings import GatewaySettings


class ReplanService:
    """Plan, edit and replan through the pools."""

    def __init__(
        self, *, settings: GatewaySettings, planners: WorkerPool, editors: WorkerPool, images: ImageInput
    ) -> None:
        self.settings = settings
        self.planners = planners
        self.editors = editors
        self.images = images

    async def plan(self, request: PlanRequest) -> PlanResponse:
        image = await self.images.resolve(request.image)
        return await self._plan(request.model_copy(update={"image": image}))

    async def _plan(self, request: PlanRequest) -> PlanResponse:
        response = await self.planners.request(
            "POST", "/v1/plan", json=request.model_dump(mode="json"), timeout_s=self.settings.timeouts.plan_s
        )
        return parse_reply(response, PlanResponse, service="planner", path="/v1/plan")

    async def edit(self, request: EditRequest) -> EditResponse:
        image = await self.images.resolve(request.image)
        return await self._edit(request.model_copy(update={"image": image}))

    async def _edit(self, request: EditRequest) -> EditResponse:
        response = await self.editors.request(
            "POST",
            "/v1/edit",
            json=request.model_dump(mode="json", exclude_none=True),
            timeout_s=self.settings.timeouts.edit_s,
            headers={"Accept": "application/json"},
            backbone=request.settings.backbone.value if request.settings.backbone else None,
        )
        return parse_reply(response, EditResponse, service="editor", path="/v1/edit")

    async def replan(self, request: ReplanRequest) -> ReplanResponse:
        image = await self.images.resolve(request.image)
        started = time.perf_counter()
        planned = await self._plan(
            PlanRequest(image=image, instruction=request.instruction, options=request.plan_options)
        )
        plan_ms = (time.perf_counter() - started) * 1000
        edited = await self._edit(EditRequest(image=image, plan=planned.plan, settings=request.settings))
        timings = {"plan_ms": plan_ms, "edit_ms": (time.perf_counter() - started) * 1000 - plan_ms}
        return ReplanResponse.from_parts(planned, edited, timings)

    async def images_edit(self, request: ImagesEditRequest) -> ImagesResponse:
        """OpenAI images/edits: one plan, `n` edits with consecutive seeds, run concurrently."""
        limit = self.settings.max_images_per_request
        if request.n > limit:
            raise BadRequest(f"n is {request.n}; the limit is {limit}", code="too_many_images", param="n")
        cores = [request.to_core(seed_offset=i) for i in range(request.n)]
        planned = await self._plan(PlanRequest(image=request.image, instruction=request.prompt))
        edits = await asyncio.gather(
            *(self._edit(EditRequest(image=core.image, plan=planned.plan, settings=core.settings)) for core in cores)
        )
        return ImagesResponse(
            data=[ImageData(b64_json=edit.image, revised_prompt=planned.plan.global_prompt) for edit in edits]
        )

    async def generations(self, body: ImagesGenerationsRequest) -> ImagesGenerationsResponse:
        """The original reward route, proxied unchanged to an editor."""
        await self.images.resolve(body.image_base64, param="image_base64")
        response = await self.editors.request(
            "POST",
            "/v1/images/generations",
            json=body.model_dump(mode="json", exclude_unset=True),
            timeout_s=self.settings.timeouts.generations_s,
        )
        return parse_reply(response, ImagesGenerationsResponse, service="editor", path="/v1/images/generations")

    async def info(self, *, jobs_executor: str) -> GatewayInfo:
        editors = await asyncio.gather(*(self._editor_info(w.url) for w in self.editors.workers))
        answered = [e for e in editors if e is not None]
        backbones = sorted(
            {Backbone(e["backbone"]) for e in answered if e.get("backbone") in _BACKBONES}, key=lambda b: b.value
        )
        settings = self.settings
        limits = Limits(
            max_body_bytes=settings.max_body_bytes,
            max_image_bytes=settings.images.max_bytes,
            max_image_pixels=settings.images.max_pixels,
            max_images_per_request=settings.max_images_per_request,
            rate_limit_requests=settings.rate_limit.requests_per_window if settings.rate_limit.enabled else None,
            rate_limit_window_s=settings.rate_limit.window_s,
            image_urls_fetched_from=list(settings.fetch.allow_hosts),
        )
        pools = {
            pool.service: [
                PoolWorker(url=s.url, health=s.health, available=s.available, outstanding=s.outstanding)
                for s in pool.status()
            ]
            for pool in (self.planners, self.editors)
        }
        return GatewayInfo(
            version=__version__,
            auth_required=not settings.auth_disabled,
            backbones=backbones,
            editors=answered,
            pools=pools,
            limits=limits,
            jobs_executor=jobs_executor,
        )

    async def _editor_info(self, url: str) -> dict[str, Any] | None:
        worker = next(w for w in self.editors.workers if w.url == url)
        try:
            response = await worker.client.request("GET", "/v1/info", timeout_s=self.settings.timeouts.info_s)
        except ReplanError:
            return None
        body = response.json()
        return body if isinstance(body, dict) else None


_BACKBONES = {b.value for b in Backbone}
