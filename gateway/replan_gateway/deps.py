"""FastAPI dependencies of the gateway's routes: the services object, the caller, and the rate limit.

Everything a route needs comes from `app.state.services` (built once by `create_app`) through these
`Annotated` aliases. `CallerDep` authenticates (401); `WorkCallerDep` also counts the call against the
key's rate limit (429), for the routes that make upstreams work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, File, Form, Header, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from replan_common.errors import BadRequest, ReplanError
from replan_common.jobs.store import JobStore
from replan_common.metrics import ServiceMetrics
from replan_gateway.auth import Authenticator, Principal
from replan_gateway.jobs import JobService
from replan_gateway.metrics import GatewayMetrics
from replan_gateway.protocol import ImagesEditRequest
from replan_gateway.ratelimit import RateLimiter
from replan_gateway.routing import WorkerPool
from replan_gateway.serving import ReplanService
from replan_gateway.settings import GatewaySettings


@dataclass(frozen=True)
class GatewayServices:
    """Everything the gateway's routes use, built once per app."""

    settings: GatewaySettings
    metrics: ServiceMetrics
    gateway_metrics: GatewayMetrics
    auth: Authenticator
    limiter: RateLimiter
    replan: ReplanService
    jobs: JobService
    store: JobStore
    planners: WorkerPool
    editors: WorkerPool


def get_services(request: Request) -> GatewayServices:
    services: GatewayServices = request.app.state.services
    return services


ServicesDep = Annotated[GatewayServices, Depends(get_services)]


def get_caller(
    services: ServicesDep,
    authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None,
) -> Principal:
    try:
        return services.auth.authenticate(authorization)
    except ReplanError as exc:
        services.gateway_metrics.refused.labels(exc.code).inc()
        raise


CallerDep = Annotated[Principal, Depends(get_caller)]


async def get_work_caller(services: ServicesDep, caller: CallerDep) -> Principal:
    limits = services.settings.rate_limit
    if limits.enabled:
        try:
            await services.limiter.hit(caller.name, limit=caller.rate_limit or limits.requests_per_window)
        except ReplanError as exc:
            services.gateway_metrics.refused.labels(exc.code).inc()
            raise
    return caller


WorkCallerDep = Annotated[Principal, Depends(get_work_caller)]


def get_replan_service(services: ServicesDep) -> ReplanService:
    return services.replan


def get_job_service(services: ServicesDep) -> JobService:
    return services.jobs


ReplanServiceDep = Annotated[ReplanService, Depends(get_replan_service)]
JobServiceDep = Annotated[JobService, Depends(get_job_service)]


async def get_images_edit_form(
    services: ServicesDep,
    prompt: Annotated[str, Form(min_length=1, max_length=4000)],
    image: Annotated[list[UploadFile] | None, File(description="The image to edit (PNG, JPEG, WebP).")] = None,
    image_list: Annotated[list[UploadFile] | None, File(alias="image[]", include_in_schema=False)] = None,
    mask: Annotated[UploadFile | None, File(description="Not supported: RePlan plans its own regions.")] = None,
    n: Annotated[int, Form(ge=1)] = 1,
    response_format: Annotated[str | None, Form()] = None,
    model: Annotated[str | None, Form()] = None,
    size: Annotated[str | None, Form()] = None,
    seed: Annotated[int, Form(ge=0)] = 0,
    user: Annotated[str | None, Form()] = None,
) -> ImagesEditRequest:
    """The multipart form of `/v1/images/edits` as an `ImagesEditRequest` (the upload checked and encoded)."""
    files = [*(image or []), *(image_list or [])]
    if len(files) != 1:
        raise BadRequest(f"send exactly one image (got {len(files)})", code="image_count", param="image")
    if mask is not None:
        raise BadRequest(
            "mask is not supported: the planner finds the regions to edit; omit mask",
            code="mask_not_supported",
            param="mask",
        )
    if response_format not in (None, "", "b64_json"):
        raise BadRequest(
            f"response_format {response_format!r} is not supported; use b64_json (images are not hosted)",
            code="unsupported_response_format",
            param="response_format",
        )
    encoded = services.replan.images.from_upload(await files[0].read())
    try:
        return ImagesEditRequest(
            image=encoded, prompt=prompt, n=n, model=model or None, size=size or None, seed=seed, user=user
        )
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from exc


ImagesEditFormDep = Annotated[ImagesEditRequest, Depends(get_images_edit_form)]
