"""The gateway's Prometheus metrics, in the service's own registry.

Names are part of the operations contract (dashboards and alerts read them), defined here once:
upstream calls by pool, worker and outcome, workers' readiness and in-flight calls, jobs created,
and requests refused by authentication or rate limits.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from replan_common.metrics import ServiceMetrics


class GatewayMetrics:
    def __init__(self, service_metrics: ServiceMetrics) -> None:
        registry = service_metrics.registry
        self.upstream_calls = Counter(
            "replan_gateway_upstream_calls_total",
            "Calls to planner and editor workers, by outcome (ok or the error code).",
            ["service", "worker", "outcome"],
            registry=registry,
        )
        self.worker_ready = Gauge(
            "replan_gateway_worker_ready",
            "1 when the worker passed its last /readyz check.",
            ["service", "worker"],
            registry=registry,
        )
        self.worker_outstanding = Gauge(
            "replan_gateway_worker_outstanding",
            "Calls in flight to the worker.",
            ["service", "worker"],
            registry=registry,
        )
        self.jobs_created = Counter(
            "replan_gateway_jobs_created_total", "Async jobs created, by kind.", ["kind"], registry=registry
        )
        self.jobs_active = Gauge(
            "replan_gateway_jobs_active",
            "Jobs not yet finished (queued, planning or editing) in the job store; a queue depth for scaling.",
            registry=registry,
        )
        self.refused = Counter(
            "replan_gateway_refused_total",
            "Requests refused before any work: missing or invalid keys, rate limits.",
            ["code"],
            registry=registry,
        )
