"""replan_eval.

Celery app and tasks for IV-Edit benchmark runs, VLM judging, metrics and reports, and GRPO rewards.
"""
