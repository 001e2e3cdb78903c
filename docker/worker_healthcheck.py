"""Container health check for the Celery worker: exit 0 when this container's worker answers a ping.

The worker serves no HTTP, so Docker asks the broker instead: a broadcast `ping` that only the workers
running in this container (node name `<name>@<hostname>`) must answer within the timeout. A worker whose
broker connection is gone, or that is wedged, does not answer.
"""

from __future__ import annotations

import socket
import sys

TIMEOUT_S = 10.0


def main() -> int:
    from replan_eval.celery_app import create_celery_app

    hostname = socket.gethostname()
    try:
        replies = create_celery_app().control.ping(timeout=TIMEOUT_S)
    except Exception as error:  # any broker failure means unhealthy; say which
        print(f"ping failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    ours = [node for reply in replies for node in reply if node.endswith("@" + hostname)]
    if not ours:
        print(f"no worker on {hostname} answered within {TIMEOUT_S} s", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
