"""Prometheus metrics. Each service owns one `ServiceMetrics` (its own registry, so several apps can live in
one test process); services add their domain metrics to the same registry.

Metric names are part of the operations contract (dashboards, alerts and KEDA scalers read them), so they
are defined here once and listed in docs/operations.md.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320, 640)


class ServiceMetrics:
    """HTTP metrics every service exports, in a registry the service also uses for its own metrics."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "replan_http_requests_total",
            "HTTP requests handled, by route and status.",
            ["service", "method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "replan_http_request_duration_seconds",
            "HTTP request latency, by route.",
            ["service", "method", "route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.info = Gauge(
            "replan_service_info",
            "Always 1; labels describe the service.",
            ["service", "version"],
            registry=self.registry,
        )
        from replan_common import __version__

        self.info.labels(service, __version__).set(1)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(self.service, method, route, str(status)).inc()
        self.latency.labels(self.service, method, route).observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for the `/metrics` route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
