"""The one error model of replan-suite.

Logic raises a `ReplanError` subclass; it never returns errors. Each class carries the HTTP status,
a machine-readable `code`, an optional `param` (where the problem is, e.g. ``regions[2].bbox``) and an
optional `retry_after_s`. The wire form is OpenAI-compatible::

    {"error": {"message": ..., "type": ..., "code": ..., "param": ..., "request_id": ...}}

Exception tree::

    ReplanError
    ├── BadRequest (400)
    │   ├── InvalidImage            the bytes are not a decodable PNG/JPEG/WebP image
    │   └── InvalidRules            an attention-rule label or matrix is malformed
    ├── Unauthorized (401)
    ├── NotFound (404)
    ├── PayloadTooLarge (413)
    │   └── ImageTooLarge           too many bytes or pixels (decompression bombs)
    ├── Unprocessable (422)
    │   ├── PlanParseError          planner output that is not a valid region plan
    │   └── InvalidRegion           a region whose box is degenerate or outside the image
    ├── RateLimited (429)           with Retry-After
    ├── QueueFull (429)             with Retry-After
    ├── UpstreamError (502)         a service we call answered badly
    ├── ServiceUnavailable (503)    not ready, or an upstream is down
    │   └── GpuOutOfMemory          with Retry-After; the worker stays up
    └── UpstreamTimeout (504)
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    """The body of the error envelope."""

    message: str
    type: str
    code: str
    param: str | None = None
    request_id: str | None = None


class ErrorEnvelope(BaseModel):
    """`{"error": {...}}`, the only error shape any replan-suite service returns."""

    error: ErrorDetail


class ReplanError(Exception):
    """Base of every error that crosses a service boundary."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.retry_after_s = retry_after_s

    def to_detail(self, request_id: str | None = None) -> ErrorDetail:
        return ErrorDetail(
            message=self.message, type=self.type, code=self.code, param=self.param, request_id=request_id
        )

    def to_envelope(self, request_id: str | None = None) -> dict[str, Any]:
        return ErrorEnvelope(error=self.to_detail(request_id)).model_dump()

    def __str__(self) -> str:
        where = f" ({self.param})" if self.param else ""
        return f"[{self.code}] {self.message}{where}"


class BadRequest(ReplanError):
    status = 400
    type = "invalid_request_error"
    default_code = "bad_request"


class InvalidImage(BadRequest):
    default_code = "invalid_image"


class InvalidRules(BadRequest):
    default_code = "invalid_rules"


class Unauthorized(ReplanError):
    status = 401
    type = "authentication_error"
    default_code = "invalid_api_key"


class NotFound(ReplanError):
    status = 404
    type = "not_found_error"
    default_code = "not_found"


class PayloadTooLarge(ReplanError):
    status = 413
    type = "invalid_request_error"
    default_code = "payload_too_large"


class ImageTooLarge(PayloadTooLarge):
    default_code = "image_too_large"


class Unprocessable(ReplanError):
    status = 422
    type = "invalid_request_error"
    default_code = "unprocessable"


class PlanParseError(Unprocessable):
    """Planner output that cannot be read as a region plan; `code` names what is wrong."""

    default_code = "invalid_plan"


class InvalidRegion(Unprocessable):
    default_code = "invalid_region"


class RateLimited(ReplanError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limited"


class QueueFull(ReplanError):
    status = 429
    type = "rate_limit_error"
    default_code = "queue_full"


class UpstreamError(ReplanError):
    status = 502
    type = "upstream_error"
    default_code = "upstream_error"


class ServiceUnavailable(ReplanError):
    status = 503
    type = "service_unavailable"
    default_code = "service_unavailable"


class GpuOutOfMemory(ServiceUnavailable):
    default_code = "gpu_out_of_memory"


class UpstreamTimeout(ReplanError):
    status = 504
    type = "upstream_timeout"
    default_code = "upstream_timeout"


_BY_STATUS: dict[int, type[ReplanError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: RateLimited,
    502: UpstreamError,
    503: ServiceUnavailable,
    504: UpstreamTimeout,
}


def error_from_envelope(status: int, body: Any, *, retry_after_s: float | None = None) -> ReplanError:
    """Rebuild a typed error from another service's error envelope, keeping its code and param.

    Used by HTTP clients so an error raised three services away reaches the user unchanged.
    """
    cls = _BY_STATUS.get(status, UpstreamError if status >= 500 else BadRequest)
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        return cls(
            detail["message"],
            code=str(detail.get("code") or cls.default_code),
            param=detail.get("param"),
            retry_after_s=retry_after_s,
        )
    return cls(f"upstream answered HTTP {status} without an error envelope", retry_after_s=retry_after_s)
