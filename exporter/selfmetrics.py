"""Perf Sentinel's own health as Prometheus metrics: implements analyzer.telemetry.Telemetry."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from analyzer import __version__

RUN_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
FIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class SelfMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        Info("perfsentinel_build", "Perf Sentinel version.", registry=r).info({"version": __version__})
        self.runs = Counter(
            "perfsentinel_runs",
            "Scheduled runs by task (score, refit) and outcome (success, failure, skipped).",
            ["task", "outcome"],
            registry=r,
        )
        self.run_duration = Histogram(
            "perfsentinel_run_duration_seconds",
            "Duration of scheduled runs.",
            ["task"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.last_success = Gauge(
            "perfsentinel_last_success_timestamp_seconds",
            "Unix time of the last successful run by task.",
            ["task"],
            registry=r,
        )
        self.errors = Counter(
            "perfsentinel_errors",
            "Failures by pipeline stage (query, fit, score) and target.",
            ["stage", "target"],
            registry=r,
        )
        self.fits = Counter(
            "perfsentinel_fits",
            "Baseline fits by model and outcome (success, failure, timeout).",
            ["model", "outcome"],
            registry=r,
        )
        self.fit_duration = Histogram(
            "perfsentinel_fit_duration_seconds",
            "Duration of one baseline fit.",
            ["model"],
            buckets=FIT_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "perfsentinel_fit_fallbacks",
            "Fits where another model replaced the configured one.",
            ["from_model", "to_model"],
            registry=r,
        )
        self.requests = Counter(
            "perfsentinel_prometheus_requests",
            "HTTP requests to Prometheus by outcome (success, client_error, server_error, timeout, connection_error, "
            "bad_response).",
            ["outcome"],
            registry=r,
        )
        self.request_duration = Histogram(
            "perfsentinel_prometheus_request_duration_seconds",
            "Duration of HTTP requests to Prometheus.",
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "perfsentinel_store_errors",
            "Failed reads and writes of the state directory by operation; the analysis goes on in memory and the "
            "write is retried.",
            ["operation"],
            registry=r,
        )
        for task in ("score", "refit"):
            for outcome in ("success", "failure", "skipped"):
                self.runs.labels(task, outcome)
            self.run_duration.labels(task)
        for outcome in ("success", "client_error", "server_error", "timeout", "connection_error", "bad_response"):
            self.requests.labels(outcome)

    # ---- analyzer.telemetry.Telemetry
    def prometheus_request(self, outcome: str, seconds: float) -> None:
        self.requests.labels(outcome).inc()
        self.request_duration.observe(seconds)

    def stage_error(self, stage: str, target: str) -> None:
        self.errors.labels(stage, target).inc()

    def fit_finished(self, model: str, outcome: str, seconds: float) -> None:
        self.fits.labels(model, outcome).inc()
        if seconds > 0:
            self.fit_duration.labels(model).observe(seconds)

    def fallback(self, from_model: str, to_model: str) -> None:
        self.fallbacks.labels(from_model, to_model).inc()

    def store_error(self, operation: str) -> None:
        self.store_errors.labels(operation).inc()

    def run_finished(self, job: str, outcome: str, seconds: float) -> None:
        """``job`` is the scheduler's job (score, refit); it is exported as the ``task`` label so that it never
        collides with the scrape's ``job`` label under ``honor_labels: true``."""
        self.runs.labels(job, outcome).inc()
        if outcome != "skipped":
            self.run_duration.labels(job).observe(seconds)
        if outcome == "success":
            self.last_success.labels(job).set(time.time())
