"""The request id of the work in progress, carried in a contextvar across async and thread hops.

Set by the HTTP middleware from the `X-Request-ID` header (or a fresh id), read by the log formatter and by
service clients, which forward it so one id follows a request through every service.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"

_request_id: ContextVar[str | None] = ContextVar("replan_request_id", default=None)


def new_request_id() -> str:
    return uuid.uuid4().hex


def get_request_id() -> str | None:
    return _request_id.get()


def set_request_id(request_id: str | None) -> object:
    """Set the current id; returns a token for `reset_request_id`."""
    return _request_id.set(request_id)


def reset_request_id(token: object) -> None:
    _request_id.reset(token)  # type: ignore[arg-type]
