"""Celery tasks, one module per queue: thin wrappers that take ids and call plain functions.

``bench`` (generation and reports), ``judge`` (scoring), ``reward`` (GRPO rewards) and the gateway's
``jobs``. Tasks are idempotent per (run, sample) or (batch, sample): the file or stored result that a
finished task leaves behind makes a second delivery a no-op.
"""
