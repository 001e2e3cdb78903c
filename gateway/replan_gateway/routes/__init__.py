"""The gateway's routers, joined into one `api_router` (health routes come from the shared app skeleton)."""

from fastapi import APIRouter

from replan_gateway.routes import health, jobs, openai_compat, replan

api_router = APIRouter()
api_router.include_router(replan.router)
api_router.include_router(jobs.router)
api_router.include_router(openai_compat.router)
api_router.include_router(health.router)

__all__ = ["api_router"]
