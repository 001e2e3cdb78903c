"""The editor's HTTP routes, one module per API area, joined into `api_router`."""

from __future__ import annotations

from fastapi import APIRouter

from replan_editor.routes import compat, edit, info

api_router = APIRouter()
api_router.include_router(edit.router)
api_router.include_router(compat.router)
api_router.include_router(info.router)

__all__ = ["api_router"]
