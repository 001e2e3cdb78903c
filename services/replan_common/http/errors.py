"""Map every error a service can raise onto the one envelope `{"error": {...}}`.

`install_error_handlers(app)` covers our `ReplanError` tree, FastAPI/Starlette `HTTPException`, request
validation errors (422 with the first bad field as `param`) and, as a last resort, unexpected exceptions
(500, logged with a traceback, never leaking internals to the client).
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from replan_common.context import get_request_id
from replan_common.errors import ErrorDetail, ErrorEnvelope, ReplanError

logger = logging.getLogger(__name__)

_STATUS_CODES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limited"),
}


def error_response(error: ReplanError) -> JSONResponse:
    """The JSON response for a typed error, with Retry-After when the error carries one."""
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return JSONResponse(error.to_envelope(get_request_id()), status_code=error.status, headers=headers)


def _envelope(status: int, message: str, code: str, type_: str, param: str | None = None) -> JSONResponse:
    body = ErrorEnvelope(
        error=ErrorDetail(message=message, type=type_, code=code, param=param, request_id=get_request_id())
    )
    return JSONResponse(body.model_dump(), status_code=status)


def _location(loc: tuple[object, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "form")]
    out = ""
    for part in parts:
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out or "body"


async def _on_replan_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ReplanError)
    if exc.status >= 500:
        logger.warning("request failed: %s", exc)
    return error_response(exc)


async def _on_http_exception(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_, code = _STATUS_CODES.get(exc.status_code, ("api_error", f"http_{exc.status_code}"))
    response = _envelope(exc.status_code, str(exc.detail), code, type_)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
    param = _location(tuple(first.get("loc", ())))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    message = f"{param}: {first.get('msg', 'invalid value')}{more}"
    return _envelope(422, message, "validation_error", "invalid_request_error", param)


async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return _envelope(500, "internal error; the request id identifies it in the logs", "internal_error", "api_error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ReplanError, _on_replan_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
