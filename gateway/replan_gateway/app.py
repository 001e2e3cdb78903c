"""`create_app`: the gateway's FastAPI app (`uvicorn --factory replan_gateway.app:create_app`).

Builds the settings (from the environment when not given), metrics, the planner and editor pools, the
image door, the authenticator and rate limiter, the job store and job queue, puts them on
`app.state.services`, mounts the routes on the shared service skeleton (error envelope, request ids,
body limit, `/healthz`, `/readyz`, `/metrics`) and, when there is a web page folder, serves it at `/`.
The lifespan runs a first health check of every upstream, keeps checking in the background, and closes
everything on shutdown. Nothing happens at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from replan_common.errors import ReplanError
from replan_common.http.app_factory import build_service_app
from replan_common.http.health import Readiness, ReadyState
from replan_common.jobs.settings import JobsSettings, open_job_store
from replan_common.jobs.store import JobStore
from replan_common.jobs.upstream import HttpJobUpstreams
from replan_common.log import configure_logging
from replan_common.metrics import ServiceMetrics
from replan_gateway.auth import Authenticator
from replan_gateway.deps import GatewayServices
from replan_gateway.image_input import ImageInput
from replan_gateway.jobs import CeleryJobQueue, InlineJobQueue, JobQueue, JobService
from replan_gateway.metrics import GatewayMetrics
from replan_gateway.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from replan_gateway.routes import api_router
from replan_gateway.routes.rewards import install_rewards
from replan_gateway.routing import WorkerPool
from replan_gateway.serving import ReplanService
from replan_gateway.settings import GatewaySettings, JobExecutor

logger = logging.getLogger(__name__)


def create_app(
    settings: GatewaySettings | None = None,
    *,
    jobs_settings: JobsSettings | None = None,
    job_queue: JobQueue | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The gateway app. Without `settings` (the `uvicorn --factory` case) they come from the environment and
    logging is configured here. `job_queue` and `transport` let tests inject a queue and upstream transport."""
    if settings is None:
        settings = GatewaySettings()
        configure_logging(settings.log_level, json_lines=settings.log_json)
        quiet_http_client_logs()
    jobs_settings = jobs_settings or JobsSettings()
    metrics = ServiceMetrics("gateway")
    gateway_metrics = GatewayMetrics(metrics)
    routing = settings.routing
    planners, editors = (
        WorkerPool(
            name,
            urls,
            timeout_s=timeout_s,
            cooldown_s=routing.cooldown_s,
            health_timeout_s=routing.health_timeout_s,
            transport=transport,
            metrics=gateway_metrics,
            info_path=info_path,
        )
        for name, urls, timeout_s, info_path in (
            ("planner", settings.planner_urls, settings.timeouts.plan_s, None),
            ("editor", settings.editor_urls, settings.timeouts.edit_s, "/v1/info"),
        )
    )
    images = ImageInput(settings.images.to_limits(), settings.fetch)
    store = open_job_store(jobs_settings.store_url, ttl_s=jobs_settings.ttl_s)
    queue = job_queue or _job_queue(settings, store)
    limiter: RateLimiter = (
        RedisRateLimiter(settings.redis_url.get_secret_value(), window_s=settings.rate_limit.window_s)
        if settings.redis_url is not None
        else MemoryRateLimiter(window_s=settings.rate_limit.window_s)
    )
    if settings.auth_disabled:
        logger.warning("authentication is DISABLED (REPLAN_AUTH_DISABLED); every caller is 'local'")
    services = GatewayServices(
        settings=settings,
        metrics=metrics,
        gateway_metrics=gateway_metrics,
        auth=Authenticator(settings.api_keys(), disabled=settings.auth_disabled),
        limiter=limiter,
        replan=ReplanService(settings=settings, planners=planners, editors=editors, images=images),
        jobs=JobService(store, queue, images, metrics=gateway_metrics),
        store=store,
        planners=planners,
        editors=editors,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await asyncio.gather(planners.check_health(), editors.check_health())
        if isinstance(queue, InlineJobQueue):
            await anyio.to_thread.run_sync(queue.recover)
        checkers = [
            asyncio.create_task(pool.run_health_checks(routing.health_interval_s)) for pool in (planners, editors)
        ]
        checkers.append(asyncio.create_task(_watch_jobs(store, gateway_metrics, routing.health_interval_s)))
        try:
            yield
        finally:
            for task in checkers:
                task.cancel()
            for task in checkers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await planners.aclose()
            await editors.aclose()
            await images.aclose()
            await limiter.aclose()
            queue.close()
            store.close()

    async def readiness() -> Readiness:
        return await _readiness(services)

    app = build_service_app(
        service="gateway",
        title="replan gateway",
        description="Region-aware image editing (RePlan): plan, edit, async jobs with progress events, "
        "OpenAI-compatible images/edits and the original reward route.",
        metrics=metrics,
        readiness=readiness,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
    )
    app.state.services = services
    app.include_router(api_router)
    install_rewards(app)  # POST /v1/rewards (replan_eval's reward service)
    static_dir = settings.resolved_static_dir()
    if static_dir is not None:
        app.mount("/", StaticFiles(directory=static_dir, html=True), name="static")
    return app


async def _watch_jobs(store: JobStore, metrics: GatewayMetrics, interval_s: float) -> None:
    """Keep the active-jobs gauge current (off the event loop; a store outage only leaves it stale)."""
    while True:
        try:
            active = await anyio.to_thread.run_sync(store.active_job_ids)
            metrics.jobs_active.set(len(active))
        except ReplanError as exc:
            logger.warning("cannot count active jobs: %s", exc)
        await asyncio.sleep(max(interval_s, 5.0))


def quiet_http_client_logs() -> None:
    """httpx logs every request at INFO (health checks: every few seconds); our access log says enough."""
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _job_queue(settings: GatewaySettings, store: JobStore) -> JobQueue:
    if settings.jobs_executor is JobExecutor.INLINE:
        upstreams = HttpJobUpstreams(
            planner_urls=settings.planner_urls,
            editor_urls=settings.editor_urls,
            plan_timeout_s=settings.timeouts.plan_s,
            edit_timeout_s=settings.timeouts.edit_s,
        )
        return InlineJobQueue(store, upstreams)
    from replan_eval.celery_app import create_celery_app

    return CeleryJobQueue(create_celery_app())


async def _readiness(services: GatewayServices) -> Readiness:
    """Ready when the job store answers and each pool has a ready worker."""
    checks: dict[str, str] = {}
    try:
        await anyio.to_thread.run_sync(services.store.ping)
        checks["job_store"] = "ok"
    except ReplanError as exc:
        checks["job_store"] = exc.code
    for pool in (services.planners, services.editors):
        checks[pool.service] = f"{pool.ready_count}/{len(pool.workers)} ready"
    missing = [] if checks["job_store"] == "ok" else ["job store"]
    missing += [f"no ready {pool.service}" for pool in (services.planners, services.editors) if pool.ready_count == 0]
    return Readiness(
        status=ReadyState.DEGRADED if missing else ReadyState.READY,
        detail="; ".join(missing) or None,
        checks=checks,
    )
