"""Container health check: GET one URL and exit 0 on a 2xx answer, 1 otherwise.

Standard library only, because the slim and CUDA runtime images carry no curl. Docker's HEALTHCHECK calls it
with the service's `/healthz` (the process is alive), mirroring the Kubernetes liveness probe; readiness
(`/readyz`, model loaded) is for load balancers and Kubernetes, not for Docker's restart-less health state.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 3.0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: healthcheck.py URL", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(argv[1], timeout=TIMEOUT_S) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"{argv[1]}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
