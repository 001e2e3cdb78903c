"""The editor's Prometheus metrics, registered in the service's own registry.

The names are part of the operations contract (Grafana dashboards and KEDA scalers read exactly these;
docs/editor.md lists them), so they are defined here once and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

from prometheus_client import Counter, Gauge, Histogram

from replan_common.metrics import LATENCY_BUCKETS_S, ServiceMetrics

#: Denoising steps take milliseconds (tiny, compiled) to seconds (1024² Qwen with CFG).
STEP_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10)


class EditOutcome(str, Enum):
    """The `outcome` label of `replan_editor_edits_total`."""

    OK = "ok"
    CLIENT_ERROR = "client_error"  # a 4xx found by the pipeline (bad rules, bad region)
    QUEUE_FULL = "queue_full"
    GPU_OOM = "gpu_oom"
    CANCELLED = "cancelled"  # the client went away while queued or running
    ERROR = "error"  # anything else; logged with a traceback


class EditorMetrics:
    """Edit latency, denoise step time, queue depth, GPU memory and edit outcomes."""

    def __init__(self, service_metrics: ServiceMetrics) -> None:
        registry = service_metrics.registry
        self.edit_seconds = Histogram(
            "replan_editor_edit_seconds",
            "Wall time of successful edits on the device (excludes queueing and image decoding).",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.queue_wait_seconds = Histogram(
            "replan_editor_queue_wait_seconds",
            "Time an edit waited for the device.",
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.denoise_step_seconds = Histogram(
            "replan_editor_denoise_step_seconds",
            "Time between consecutive denoising-step callbacks.",
            buckets=STEP_BUCKETS_S,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "replan_editor_queue_depth",
            "Edits waiting for the device (not counting the running one).",
            registry=registry,
        )
        self.running = Gauge("replan_editor_jobs_running", "Edits running on the device (0 or 1).", registry=registry)
        self.gpu_memory_bytes = Gauge(
            "replan_editor_gpu_memory_bytes",
            "Bytes reserved by PyTorch's CUDA caching allocator on this worker's device; 0 on CPU.",
            registry=registry,
        )
        self.edits = Counter("replan_editor_edits_total", "Edits by outcome.", ["outcome"], registry=registry)
        for outcome in EditOutcome:
            self.edits.labels(outcome.value)  # export zeros so rate() works from the first scrape

    def count(self, outcome: EditOutcome) -> None:
        self.edits.labels(outcome.value).inc()

    def read_gpu_memory_with(self, read: Callable[[], float]) -> None:
        """Evaluate `read` at every scrape instead of storing a value."""
        self.gpu_memory_bytes.set_function(read)
