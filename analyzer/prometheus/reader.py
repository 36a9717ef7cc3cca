"""Reads range data from Prometheus' HTTP API.

Long ranges are split so that no request asks for more than ``max_points_per_request`` points per series
(Prometheus refuses more than 11,000). Connection errors, timeouts and 5xx answers are retried with exponential
backoff and jitter; a 4xx answer (bad PromQL) raises QueryError at once so the caller can report that target
and carry on with the others. Missing samples stay NaN, never zero.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import requests

from analyzer.config import PrometheusConfig
from analyzer.prometheus.credentials import PrometheusAuth, redact
from analyzer.series import Series, grid
from analyzer.telemetry import NullTelemetry, Telemetry


class PrometheusError(RuntimeError):
    """Base of everything the reader raises."""


class QueryError(PrometheusError):
    """Prometheus rejected the query (HTTP 4xx or status=error with bad_data): retrying will not help."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or kept failing after all retries."""


@dataclass(frozen=True)
class TimeRange:
    start: float
    end: float
    step: float


def split_range(start: float, end: float, step: float, max_points: int) -> list[TimeRange]:
    """Consecutive sub-ranges on the same grid, each with at most ``max_points`` points."""
    chunks = []
    span = step * (max_points - 1)
    chunk_start = start
    while chunk_start <= end + 1e-9:
        chunk_end = min(chunk_start + span, end)
        chunks.append(TimeRange(chunk_start, chunk_end, step))
        chunk_start = chunk_end + step
    return chunks


def build_session(config: PrometheusConfig) -> requests.Session:
    """A session whose Authorization header is set per request (token and password files re-read on change)."""
    session = requests.Session()
    session.headers.update(config.headers)
    if PrometheusAuth.configured(config):
        session.auth = PrometheusAuth(config)
    session.verify = config.ca_file if (config.tls_verify and config.ca_file) else config.tls_verify
    return session


class PrometheusReader:
    def __init__(
        self,
        config: PrometheusConfig,
        telemetry: Telemetry | None = None,
        sleep: Callable[[float], object] | None = None,
        session: requests.Session | None = None,
    ) -> None:
        self.config = config
        self.telemetry = telemetry or NullTelemetry()
        self.cancelled = threading.Event()  # set on shutdown: ends retries and backoff waits at once
        self.sleep = sleep or self.cancelled.wait
        self.session = session or build_session(config)

    # ------------------------------------------------------------ HTTP with retries
    def _backoff(self, attempt: int) -> float:
        delay = min(self.config.max_backoff, self.config.backoff * 2**attempt)
        return delay * random.uniform(0.5, 1.0)

    def _request_once(self, path: str, params: dict[str, str]) -> tuple[str, dict | str]:
        """One attempt: returns (outcome, payload or error text)."""
        started = time.monotonic()
        try:
            response = self.session.get(f"{self.config.url}{path}", params=params, timeout=self.config.timeout)
        except requests.Timeout:
            outcome, payload = "timeout", f"timed out after {self.config.timeout:g}s"
        except requests.RequestException as exc:
            outcome, payload = "connection_error", str(exc)
        else:
            if response.status_code >= 500:
                outcome, payload = "server_error", f"HTTP {response.status_code}: {response.text[:300]}"
            elif response.status_code >= 400:
                outcome, payload = "client_error", _error_text(response)
            else:
                outcome, payload = "success", response.json()
        self.telemetry.prometheus_request(outcome, time.monotonic() - started)
        return outcome, payload

    def get(self, path: str, params: dict[str, str]) -> dict:
        last_error = ""
        for attempt in range(self.config.retries + 1):
            if self.cancelled.is_set():
                raise PrometheusUnavailable("not queried: the service is stopping")
            outcome, payload = self._request_once(path, params)
            if outcome == "success":
                assert isinstance(payload, dict)
                return payload
            if outcome == "client_error":
                raise QueryError(str(payload))
            last_error = f"{outcome}: {payload}"
            if attempt < self.config.retries:
                self.sleep(self._backoff(attempt))
        message = f"{self.config.url} failed {self.config.retries + 1} times, last: {last_error}"
        raise PrometheusUnavailable(redact(message, self.config))

    # ------------------------------------------------------------ API
    def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """All series of ``query`` on the grid start..end (NaN where Prometheus has no sample)."""
        timestamps = grid(start, end, step)
        merged: dict[str, Series] = {}
        for chunk in split_range(start, end, step, self.config.max_points_per_request):
            params = {
                "query": query,
                "start": f"{chunk.start:.3f}",
                "end": f"{chunk.end:.3f}",
                "step": f"{step:g}",
            }
            body = self.get("/api/v1/query_range", params)
            for item in body.get("data", {}).get("result", []):
                _merge_matrix_item(merged, item, timestamps, start, step)
        return list(merged.values())

    def query(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """Instant query: (labels, value) per series."""
        body = self.get("/api/v1/query", {"query": query, "time": f"{at:.3f}"})
        return [(dict(item["metric"]), float(item["value"][1])) for item in body.get("data", {}).get("result", [])]


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        return f"HTTP {response.status_code} {body.get('errorType', '')}: {body.get('error', '')}"
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"


def _merge_matrix_item(
    merged: dict[str, Series], item: dict, timestamps: np.ndarray, start: float, step: float
) -> None:
    labels = {k: v for k, v in item["metric"].items() if k != "__name__"}
    series = Series(labels, timestamps, np.full(len(timestamps), np.nan))
    series = merged.setdefault(series.key, series)
    if not item.get("values"):
        return
    points = np.asarray(item["values"], dtype=object)
    index = np.rint((points[:, 0].astype(np.float64) - start) / step).astype(np.int64)
    values = np.array([_parse_value(v) for v in points[:, 1]], dtype=np.float64)
    valid = (index >= 0) & (index < len(timestamps))
    series.values[index[valid]] = values[valid]


def _parse_value(text: str) -> float:
    value = float(text)  # Prometheus sends "NaN", "+Inf", "-Inf" as strings; float() reads them all
    return value if np.isfinite(value) else np.nan
