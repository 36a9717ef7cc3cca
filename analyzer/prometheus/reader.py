"""Reads range data from Prometheus' HTTP API, close to the wire.

Requests are sized by the samples they return (``max_samples_per_request``, well below Prometheus' own
``--query.max-samples``), not by points per series, so the memory one answer takes does not grow with the series
count of a target; an answer Prometheus refuses for its sample limit (HTTP 422) or that exceeds
``max_response_bytes`` is split in two. Answers are asked for uncompressed by default (Prometheus compresses on
one core at 6-9 MB/s, a loss on any link faster than ~50 Mbit/s; ``compression: true`` for slow links) and decoded
by ``analyzer.prometheus.decode`` without a Python object per sample.

Connection errors, timeouts and 5xx answers are retried with exponential backoff and jitter; a 4xx answer (bad
PromQL) raises QueryError, a 200 answer that is not the expected Prometheus JSON raises BadResponse, and more
series than a target's ``max_series`` raises TooManySeries: all are PrometheusError, so the caller reports that
target and carries on with the others. Missing samples stay NaN, never zero; +Inf and -Inf are kept.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np
import requests

from analyzer.config import PrometheusConfig
from analyzer.prometheus.credentials import PrometheusAuth, redact
from analyzer.prometheus.decode import BadResponse, DecodedMatrix, decode_matrix, decode_vector
from analyzer.series import Series, grid, series_key
from analyzer.telemetry import NullTelemetry, Telemetry


class PrometheusError(RuntimeError):
    """Base of everything the reader raises."""


class QueryError(PrometheusError):
    """Prometheus rejected the query (HTTP 4xx or status=error with bad_data): retrying will not help."""


class PrometheusUnavailable(PrometheusError):
    """Prometheus could not be reached or kept failing after all retries."""


class BadAnswer(PrometheusError):
    """A 200 answer that is not the expected Prometheus JSON (the decoder's BadResponse, for this target)."""


class TooManySamples(QueryError):
    """Prometheus refused a request for its own sample limit (HTTP 422, --query.max-samples)."""


class ResponseTooLarge(PrometheusError):
    """An answer grew beyond ``max_response_bytes`` while it was read."""


class TooManySeries(PrometheusError):
    """The query returned more series than the target's ``max_series``."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"query returned more than {limit} series ({count} so far), the target's max_series: "
                         "narrow the query or raise max_series")  # fmt: skip
        self.count, self.limit = count, limit


class SeriesCollision(PrometheusError):
    """Two series of the answer would be exported with the same labels."""


T = TypeVar("T")
Sink = Callable[[dict[str, str], np.ndarray, np.ndarray], None]
log = logging.getLogger(__name__)
TOO_MANY_SAMPLES = "query processing would load too many samples"
POST_ABOVE_CHARACTERS = 4000  # longer queries (a shard's matcher list) go in a form body, not the URL
DEFAULT_SERIES_GUESS = 10_000  # the series count the first request is sized for when nothing else is known


def build_session(config: PrometheusConfig) -> requests.Session:
    """A session whose Authorization header is set per request (token and password files re-read on change)."""
    session = requests.Session()
    session.headers.update(config.headers)
    if PrometheusAuth.configured(config):
        session.auth = PrometheusAuth(config)
    session.verify = config.ca_file if (config.tls_verify and config.ca_file) else config.tls_verify
    return session


class PrometheusReader:
    """Reads Prometheus' query API. ``read_matrix`` hands each decoded series of each request to a sink, so a caller
    keeps only its own compact arrays and never a whole answer's worth of Python objects."""

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
        self.points_read = 0  # samples decoded since start (bench/scale.py reports points read per hour)

    # ------------------------------------------------------------ HTTP with retries
    def _backoff(self, attempt: int) -> float:
        delay = min(self.config.max_backoff, self.config.backoff * 2**attempt)
        return delay * random.uniform(0.5, 1.0)

    def _send(self, path: str, params: dict[str, str]) -> requests.Response:
        url = f"{self.config.url}{path}"
        headers = {} if self.config.compression else {"Accept-Encoding": "identity"}
        if sum(len(v) for v in params.values()) > POST_ABOVE_CHARACTERS:  # a long matcher list: a form body
            return self.session.post(url, data=params, headers=headers, timeout=self.config.timeout, stream=True)
        return self.session.get(url, params=params, headers=headers, timeout=self.config.timeout, stream=True)

    def _body(self, response: requests.Response) -> str:
        """The answer's text, read no further than ``max_response_bytes``."""
        limit = self.config.max_response_bytes
        chunks, size = [], 0
        for chunk in response.iter_content(chunk_size=1 << 20):
            size += len(chunk)
            if size > limit:
                response.close()
                raise ResponseTooLarge(f"answer larger than {limit / 2**20:g} MiB (prometheus.max_response_bytes)")
            chunks.append(chunk)
        data = b"".join(chunks)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadResponse(f"answer is not UTF-8 text: {data[:80]!r}") from None

    def _request_once(self, path: str, params: dict[str, str], decode: Callable[[str], T]) -> tuple[str, T | str]:
        """One attempt: (outcome, decoded answer or error text). Raises at once for what retrying cannot mend."""
        started = time.monotonic()
        outcome, payload = "success", ""
        try:
            response = self._send(path, params)
            if response.status_code >= 500:
                outcome, payload = "server_error", f"HTTP {response.status_code}: {_head(response)}"
            elif response.status_code >= 400:
                outcome, payload = "client_error", _error_text(response)
            else:
                payload = decode(self._body(response))
        except requests.Timeout:
            outcome, payload = "timeout", f"timed out after {self.config.timeout:g}s"
        except requests.RequestException as exc:
            outcome, payload = "connection_error", str(exc)
        except ResponseTooLarge:
            outcome = "too_large"
            raise
        except BadResponse as exc:
            outcome = "bad_response"
            raise BadAnswer(redact(str(exc), self.config)) from None  # a proxy's page may echo credentials
        finally:
            self.telemetry.prometheus_request(outcome, time.monotonic() - started)
        return outcome, payload

    def fetch(self, path: str, params: dict[str, str], decode: Callable[[str], T]) -> T:
        """The decoded answer. Connection errors, timeouts and 5xx are retried with backoff; a 4xx raises
        QueryError (TooManySamples for Prometheus' sample limit), an unusable 200 answer BadResponse."""
        last_error = ""
        for attempt in range(self.config.retries + 1):
            if self.cancelled.is_set():
                raise PrometheusUnavailable("not queried: the service is stopping")
            outcome, payload = self._request_once(path, params, decode)
            if outcome == "success":
                return payload  # type: ignore[return-value]
            if outcome == "client_error":
                error = TooManySamples if TOO_MANY_SAMPLES in str(payload) else QueryError
                raise error(redact(str(payload), self.config))
            last_error = f"{outcome}: {payload}"
            if attempt < self.config.retries:
                self.sleep(self._backoff(attempt))
        message = f"{self.config.url} failed {self.config.retries + 1} times, last: {last_error}"
        raise PrometheusUnavailable(redact(message, self.config))

    # ------------------------------------------------------------ API
    def read_matrix(
        self, query: str, start: float, end: float, step: float, sink: Sink, *,
        max_series: int | None = None, expected_series: int | None = None,
    ) -> int:  # fmt: skip
        """Read ``query`` on the grid start..end, newest requests first, and hand every decoded series of every
        request to ``sink(labels, times, values)``. Returns the number of distinct series read.

        Requests are sized by samples, not points: at most ``max_samples_per_request`` (and Prometheus' limit of
        ``max_points_per_request`` points per series), from the series count of the previous request (the first
        one assumes ``expected_series``, else ``max_series``). A request Prometheus refuses for its own sample
        limit (HTTP 422), or whose answer is larger than ``max_response_bytes``, is split in two and retried.
        More than ``max_series`` distinct series raises TooManySeries."""
        limit = max_series or DEFAULT_SERIES_GUESS
        seen: set[str] = set()
        per_request = self._points_per_request(expected_series or limit)
        last = int(np.floor((end - start) / step + 1e-9))  # grid index of the newest point
        while last >= 0:
            first = max(0, last - per_request + 1)
            try:
                decoded = self._read_chunk(query, start + first * step, start + last * step, step)
            except (TooManySamples, ResponseTooLarge) as exc:
                if last == first:
                    raise QueryError(f"{exc}, even for one step: lower the series count of the query") from None
                per_request = max(1, (last - first + 1) // 2)
                continue
            for labels, times, values in zip(decoded.labels, decoded.times, decoded.values, strict=True):
                seen.add(series_key(labels))
                sink(labels, times, values)
            if max_series is not None and len(seen) > max_series:
                raise TooManySeries(len(seen), max_series)
            self.points_read += decoded.samples
            per_request = self._points_per_request(len(decoded.labels))
            last = first - 1
        return len(seen)

    def _points_per_request(self, series: int) -> int:
        budget = self.config.max_samples_per_request // max(series, 1)
        return int(min(self.config.max_points_per_request, max(1, budget)))

    def _read_chunk(self, query: str, start: float, end: float, step: float) -> DecodedMatrix:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        decoded = self.fetch("/api/v1/query_range", params, decode_matrix)
        for warning in decoded.warnings:
            log.warning("Prometheus warns about query %s: %s", query, warning)
        return decoded

    def query_range(self, query: str, start: float, end: float, step: float, max_series: int | None = None
                    ) -> list[Series]:  # fmt: skip
        """All series of ``query`` on the grid start..end (NaN where Prometheus has no sample; +-Inf kept)."""
        grid = GridBuilder(start, end, step)
        self.read_matrix(query, start, end, step, grid.add, max_series=max_series)
        return grid.series()

    def query(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """Instant query: (labels, value) per series."""
        return self.fetch("/api/v1/query", {"query": query, "time": f"{at:.3f}"}, decode_vector)


class GridBuilder:
    """Collects the series of one read on its time grid (a sink for ``read_matrix``); several metric names in
    one answer keep the name as a label (``identity_labels``)."""

    def __init__(self, start: float, end: float, step: float) -> None:
        self.start, self.step = start, step
        self.timestamps = grid(start, end, step)
        self.rows: dict[str, tuple[dict[str, str], np.ndarray]] = {}

    def add(self, labels: dict[str, str], times: np.ndarray, values: np.ndarray) -> None:
        key = series_key(labels)
        if key not in self.rows:
            self.rows[key] = (labels, np.full(len(self.timestamps), np.nan))
        row = self.rows[key][1]
        index = np.rint((times - self.start) / self.step).astype(np.int64)
        inside = (index >= 0) & (index < len(row))
        row[index[inside]] = values[inside]

    def series(self) -> list[Series]:
        raw = [labels for labels, _ in self.rows.values()]
        keep_name = several_metric_names(raw)
        return [Series(identity_labels(labels, keep_name), self.timestamps, values)
                for labels, values in self.rows.values()]  # fmt: skip


def several_metric_names(labels: Iterable[dict[str, str]]) -> bool:
    return len({item.get("__name__") for item in labels} - {None}) > 1


def identity_labels(labels: dict[str, str], keep_name: bool) -> dict[str, str]:
    """A series' labels as Perf Sentinel exports them: without ``__name__``, unless the target's answers hold
    several metric names, then the name is kept as ``metric_name`` (``exported_metric_name`` when the series
    already has a ``metric_name`` label), so that series differing only in their name stay apart."""
    rest = {k: v for k, v in labels.items() if k != "__name__"}
    if keep_name and "__name__" in labels:
        rest["exported_metric_name" if "metric_name" in rest else "metric_name"] = labels["__name__"]
    return rest


def _head(response: requests.Response) -> str:
    return response.text[:300]


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
        return f"HTTP {response.status_code} {body.get('errorType', '')}: {body.get('error', '')}"
    except ValueError:
        return f"HTTP {response.status_code}: {_head(response)}"
