"""The gateway app in-process, with stand-in planner and editor workers behind an httpx transport.

The stand-ins speak the real wire models and record what they received, so the gateway's routing,
balancing, failure handling, auth, limits and job routes are tested without model processes; the real
services are exercised end to end in tests/integration/gateway.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from PIL import Image

from replan_common.jobs.settings import JobsSettings
from replan_common.plan import Region, RegionPlan
from replan_common.protocol import (
    EditRequest,
    EditResponse,
    GeneratedImage,
    ImagesGenerationsResponse,
    PlanRequest,
    PlanResponse,
)
from replan_gateway.app import create_app
from replan_gateway.settings import ApiKey, GatewaySettings, hash_api_key

API_KEY = "sk-test-main"
LIMITED_KEY = "sk-test-limited"
OTHER_KEY = "sk-test-other"


def png_b64(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


@dataclass
class StubWorker:
    """A planner or editor stand-in: counts calls, records headers, can be made to fail or hang."""

    name: str
    calls: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    ready: bool = True
    fail_status: int | None = None
    delay_s: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    backbone: str = "flux-kontext"

    def app(self, kind: str) -> FastAPI:
        app = FastAPI()

        @app.get("/readyz")
        async def readyz() -> JSONResponse:
            return JSONResponse(
                {"status": "ready" if self.ready else "loading"}, status_code=200 if self.ready else 503
            )

        async def enter(request: Request, route: str) -> JSONResponse | None:
            self.calls.append(route)
            self.headers.append(dict(request.headers))
            if self.fail_status is not None:
                body = {"error": {"message": f"{self.name} is broken", "type": "api_error", "code": "stub_failure"}}
                return JSONResponse(body, status_code=self.fail_status)
            return None

        if kind == "planner":

            @app.post("/v1/plan")
            async def plan(body: PlanRequest, request: Request) -> Any:
                if (failed := await enter(request, "plan")) is not None:
                    return failed
                plan = RegionPlan(
                    reasoning="stub", global_prompt=body.instruction, regions=(Region(bbox=(1, 1, 10, 10), hint="x"),)
                )
                return PlanResponse(plan=plan, raw_text=plan.to_tagged_text(), model=f"stub-{self.name}")

        else:

            @app.post("/v1/edit")
            async def edit(body: EditRequest, request: Request) -> Any:
                if (failed := await enter(request, "edit")) is not None:
                    return failed
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
                try:
                    await asyncio.sleep(self.delay_s)
                finally:
                    self.in_flight -= 1
                plan = body.plan or RegionPlan(global_prompt=body.instruction or "from text")
                settings = body.settings.model_copy(update={"steps": body.settings.steps or 2})
                return EditResponse(image=body.image, width=32, height=24, plan=plan, settings=settings)

            @app.post("/v1/images/generations")
            async def generations(request: Request) -> Any:
                if (failed := await enter(request, "generations")) is not None:
                    return failed
                body = await request.json()
                return ImagesGenerationsResponse(data=[GeneratedImage(final_image_base64=body["image_base64"])])

            @app.get("/v1/info")
            async def info() -> dict[str, object]:
                return {"service": "editor", "backbone": self.backbone, "status": "ready"}

        return app


class HostTransport(httpx.AsyncBaseTransport):
    """Routes each request to the ASGI app registered for its host; unknown hosts refuse the connection."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self.transports = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        transport = self.transports.get(request.url.host)
        if transport is None:
            raise httpx.ConnectError(f"connection refused: {request.url.host}", request=request)
        return await transport.handle_async_request(request)


class RecordingQueue:
    """A job queue that only remembers ids; tests run the jobs themselves."""

    name = "recording"

    def __init__(self) -> None:
        self.ids: list[str] = []

    def enqueue(self, job_id: str) -> None:
        self.ids.append(job_id)

    def close(self) -> None:
        return None


@dataclass
class Stack:
    client: TestClient
    planners: dict[str, StubWorker]
    editors: dict[str, StubWorker]
    queue: RecordingQueue
    app: FastAPI

    def auth(self, key: str = API_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


def gateway_settings(**overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "planner_urls": ["http://planner-a", "http://planner-b"],
        "editor_urls": ["http://editor-a", "http://editor-b"],
        "auth": {
            "keys": [
                ApiKey(name="main", sha256=hash_api_key(API_KEY)),
                ApiKey(name="limited", sha256=hash_api_key(LIMITED_KEY), rate_limit=3),
                ApiKey(name="other", sha256=hash_api_key(OTHER_KEY)),
            ]
        },
        "rate_limit": {"requests_per_window": 1000, "window_s": 3600},
        "routing": {"health_interval_s": 3600, "cooldown_s": 30},
        "max_body_bytes": 4 * 1024 * 1024,
        "images": {"max_bytes": 1024 * 1024, "max_pixels": 100_000},
        "log_json": False,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    opened: list[TestClient] = []

    def _make(**overrides: Any) -> Stack:
        planners = {name: StubWorker(name) for name in ("planner-a", "planner-b")}
        editors = {name: StubWorker(name) for name in ("editor-a", "editor-b")}
        apps = {name: w.app("planner") for name, w in planners.items()}
        apps.update({name: w.app("editor") for name, w in editors.items()})
        queue = RecordingQueue()
        app = create_app(
            gateway_settings(**overrides),
            jobs_settings=JobsSettings(store_url=f"sqlite:///{tmp_path / 'jobs.sqlite'}"),
            job_queue=queue,
            transport=HostTransport(apps),
        )
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return Stack(client=client, planners=planners, editors=editors, queue=queue, app=app)

    yield _make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def stack(make_stack: Callable[..., Stack]) -> Stack:
    return make_stack()


@pytest.fixture
def make_png() -> Callable[..., str]:
    return png_b64


@pytest.fixture
def image_b64() -> str:
    return png_b64()
