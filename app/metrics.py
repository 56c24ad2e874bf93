"""Prometheus metrics, one registry per app so that several apps (tests) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "logpx_requests_total",
            "HTTP requests by model, endpoint and status",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.queue_seconds = Histogram(
            "logpx_queue_seconds",
            "Time waiting for the device worker",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.compute_seconds = Histogram(
            "logpx_compute_seconds",
            "Model and estimator time per request",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.samples = Counter(
            "logpx_importance_samples_total",
            "Importance samples evaluated (inputs x k)",
            ["model"],
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "logpx_batch_requests",
            "Requests coalesced into one forward pass",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.queue_depth = Gauge("logpx_queue_depth", "Requests waiting per device", ["device"], registry=self.registry)
        self.job_runner_healthy = Gauge(
            "logpx_job_runner_healthy",
            "1 while the job runner runs and its store answers, else 0",
            registry=self.registry,
        )
        self.job_store_errors = Counter(
            "logpx_job_store_errors_total", "Job-store calls that failed (each retry counts)", registry=self.registry
        )
        self.cuda_memory = Gauge(
            "logpx_cuda_memory_allocated_bytes",
            "torch.cuda.memory_allocated per device",
            ["device"],
            registry=self.registry,
        )
