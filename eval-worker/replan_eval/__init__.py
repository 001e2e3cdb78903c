"""The eval worker: IV-Edit benchmark runs, VLM judging, metrics and reports, and GRPO rewards.

Plain logic lives in modules that know nothing of Celery (`rewards/`, `judge/`, `dataset`, `aggregate`,
`image_metrics`, `report`); the Celery app and its thin tasks sit on top, `rewards.service` is what the
gateway's ``POST /v1/rewards`` runs, `adapters/` are the trainers' reward functions (HTTP clients of that
route) and `cli` is ``replan bench``. Importing any of it does no I/O.
"""
