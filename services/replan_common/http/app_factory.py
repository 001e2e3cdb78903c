"""The common skeleton of every service's `create_app`: error envelope, request context, health routes."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI

from replan_common import __version__
from replan_common.http.errors import install_error_handlers
from replan_common.http.health import ReadinessProbe, health_router
from replan_common.http.middleware import RequestContextMiddleware
from replan_common.metrics import ServiceMetrics


def build_service_app(
    *,
    service: str,
    title: str,
    description: str,
    metrics: ServiceMetrics,
    readiness: ReadinessProbe,
    max_body_bytes: int,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """A FastAPI app with the shared plumbing installed; the service adds its routers."""
    app = FastAPI(title=title, description=description, version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=max_body_bytes)
    app.include_router(health_router(service, metrics, readiness))
    return app


__all__ = ["build_service_app"]
