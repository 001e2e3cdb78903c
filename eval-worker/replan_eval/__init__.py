"""The eval worker: IV-Edit benchmark runs, VLM judging, metrics and reports, and GRPO rewards.

Plain logic lives in modules that know nothing of Celery (`rewards/`, `judge/`, `dataset`, `aggregate`,
`image_metrics`, `report`); the Celery app and its thin tasks sit on top. Importing any of it does no I/O.
"""
