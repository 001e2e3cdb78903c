"""`GET /v1/info`: what this worker serves (backbone, model, device, resolved defaults, kernels)."""

from __future__ import annotations

from fastapi import APIRouter

from replan_editor.deps import EditServiceDep
from replan_editor.protocol import EditorInfo

router = APIRouter(prefix="/v1", tags=["info"])


@router.get("/info", response_model=EditorInfo, summary="Backbone, model, device, defaults and kernels")
async def info(service: EditServiceDep) -> EditorInfo:
    return service.info()
