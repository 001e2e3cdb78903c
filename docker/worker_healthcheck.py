"""Container health check for the Celery worker: exit 0 when the worker's broker answers, 1 otherwise.

The worker serves no HTTP. A broadcast `ping` is no health check for it either: the editor-driving worker
runs on the solo pool, which answers control messages only between tasks, and one task (an edit, a
benchmark sample) can take minutes; it would look dead exactly while it works. So this checks what can
be checked from beside it: the broker the container is configured with (REPLAN_WORKER_BROKER_URL) accepts
a connection. A worker process that dies ends the container, which Docker or Kubernetes restarts.
"""

from __future__ import annotations

import sys


def main() -> int:
    from replan_eval.celery_app import create_celery_app

    app = create_celery_app()
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=1, timeout=5)
    except Exception as error:  # any broker failure means unhealthy; say which
        print(f"broker unreachable: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
