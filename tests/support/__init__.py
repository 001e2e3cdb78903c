"""Helpers for tests that start real processes (uvicorn services, Celery workers, Redis)."""
