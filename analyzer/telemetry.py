"""What the analyzer reports about itself. The exporter implements this with Prometheus metrics;
the analyzer only calls these methods and never formats exposition text."""

from __future__ import annotations

from typing import Protocol


class Telemetry(Protocol):
    def prometheus_request(self, outcome: str, seconds: float) -> None:
        """One HTTP request to Prometheus: outcome is success, client_error, server_error, timeout,
        connection_error or bad_response (an answer that is not a Prometheus API answer of the expected kind)."""

    def stage_error(self, stage: str, target: str) -> None:
        """A failure in a pipeline stage (query, fit, score) for one target."""

    def fit_finished(self, model: str, outcome: str, seconds: float) -> None:
        """One baseline fit: outcome is success, failure, timeout or insufficient_data."""

    def fallback(self, from_model: str, to_model: str) -> None:
        """A model could not be used and another took its place."""

    def run_finished(self, job: str, outcome: str, seconds: float) -> None:
        """A scheduled job (score, refit) ended: outcome is success, failure or skipped."""

    def store_error(self, operation: str) -> None:
        """A read or write of the state directory failed (operation: save, flags, records, touch, history ...);
        the analysis went on in memory."""


class NullTelemetry:
    """Telemetry that records nothing (CLI one-shot runs, tests)."""

    def prometheus_request(self, outcome: str, seconds: float) -> None:
        pass

    def stage_error(self, stage: str, target: str) -> None:
        pass

    def fit_finished(self, model: str, outcome: str, seconds: float) -> None:
        pass

    def fallback(self, from_model: str, to_model: str) -> None:
        pass

    def run_finished(self, job: str, outcome: str, seconds: float) -> None:
        pass

    def store_error(self, operation: str) -> None:
        pass
