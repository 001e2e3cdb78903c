"""The planner's own Prometheus metrics, registered in the service's `ServiceMetrics` registry.

Names are part of the operations contract (dashboards, alerts); docs/planner.md lists them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from replan_common.metrics import LATENCY_BUCKETS_S

__all__ = ["PlannerMetrics", "UpstreamErrorKind"]

TOKEN_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 4096, 8192)


class UpstreamErrorKind:
    """Values of the `kind` label of `replan_planner_upstream_errors_total` (one per failed attempt)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    HTTP_5XX = "http_5xx"
    HTTP_429 = "http_429"
    HTTP_4XX = "http_4xx"
    BAD_RESPONSE = "bad_response"


class PlannerMetrics:
    """Plan latency by outcome, generated tokens, upstream errors, invalid answers and box adjustments."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.plan_latency = Histogram(
            "replan_planner_plan_duration_seconds",
            "Time to answer one plan request, by backend, mode and outcome (ok or an error code).",
            ["backend", "mode", "outcome"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.generate_latency = Histogram(
            "replan_planner_generate_duration_seconds",
            "Time the model took to answer (in-process generation or the upstream call, retries included).",
            ["backend"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.generated_tokens = Histogram(
            "replan_planner_generated_tokens",
            "Tokens generated per plan.",
            ["backend"],
            buckets=TOKEN_BUCKETS,
            registry=registry,
        )
        self.upstream_errors = Counter(
            "replan_planner_upstream_errors_total",
            "Failed attempts to call the OpenAI-compatible upstream, by kind.",
            ["kind"],
            registry=registry,
        )
        self.output_invalid = Counter(
            "replan_planner_output_invalid_total",
            "Model answers that were not a valid plan, by the parser's error code.",
            ["code"],
            registry=registry,
        )
        self.region_adjustments = Counter(
            "replan_planner_region_adjustments_total",
            "Regions the service clipped or dropped after the model proposed them.",
            ["action"],
            registry=registry,
        )

    def observe_upstream_error(self, kind: str) -> None:
        self.upstream_errors.labels(kind).inc()
