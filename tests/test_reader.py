"""Reader: range splitting, retries and error classification (mocked transport for the error paths only),
and real Prometheus for labels, gaps and long ranges."""

import numpy as np
import pytest
import requests

from analyzer.config import PrometheusConfig
from analyzer.prometheus.localprom import BackfillSeries
from analyzer.prometheus.reader import PrometheusReader, PrometheusUnavailable, QueryError, split_range


class RecordingTelemetry:
    def __init__(self):
        self.outcomes = []

    def prometheus_request(self, outcome, seconds):
        self.outcomes.append(outcome)


class FakeResponse:
    def __init__(self, status: int, body: dict | None = None):
        self.status_code = status
        self._body = body or {}
        self.text = str(body)

    def json(self):
        return self._body


class ScriptedSession:
    """Answers each GET with the next scripted item (an exception class or a FakeResponse)."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def get(self, url, params=None, timeout=None):
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, type) and issubclass(item, Exception):
            raise item("scripted failure")
        return item


OK_BODY = {"status": "success", "data": {"resultType": "matrix", "result": []}}


def reader_with(script, retries=3):
    telemetry = RecordingTelemetry()
    sleeps = []
    config = PrometheusConfig(url="http://prom:9090", retries=retries)
    reader = PrometheusReader(config, telemetry, sleep=sleeps.append, session=ScriptedSession(script))
    return reader, telemetry, sleeps


def test_split_range_never_exceeds_the_point_limit_and_covers_the_grid():
    chunks = split_range(0, 28 * 86400, 60, 11000)
    points = [round((c.end - c.start) / 60) + 1 for c in chunks]
    assert max(points) <= 11000
    assert sum(points) == 28 * 1440 + 1
    assert all(b.start == a.end + 60 for a, b in zip(chunks, chunks[1:], strict=False))


def test_connection_errors_timeouts_and_5xx_are_retried_with_growing_backoff():
    script = [requests.ConnectionError, requests.Timeout, FakeResponse(503), FakeResponse(200, OK_BODY)]
    reader, telemetry, sleeps = reader_with(script)
    assert reader.query_range("up", 0, 600, 60) == []
    assert telemetry.outcomes == ["connection_error", "timeout", "server_error", "success"]
    assert len(sleeps) == 3
    assert sleeps[2] > sleeps[0]  # exponential: 0.5x2^2 vs 0.5x2^0 even with jitter in [0.5, 1]


def test_gives_up_after_retries_with_a_clear_error():
    reader, telemetry, sleeps = reader_with([requests.ConnectionError] * 3, retries=2)
    with pytest.raises(PrometheusUnavailable, match="failed 3 times"):
        reader.query_range("up", 0, 600, 60)
    assert len(sleeps) == 2


def test_bad_promql_is_not_retried():
    body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}
    reader, telemetry, sleeps = reader_with([FakeResponse(400, body)])
    with pytest.raises(QueryError, match="parse error"):
        reader.query_range("up{", 0, 600, 60)
    assert sleeps == [] and telemetry.outcomes == ["client_error"]


@pytest.mark.integration
def test_real_prometheus_labels_gaps_and_split_ranges(start_prometheus):
    step = 60.0
    end = 1_767_571_200.0
    timestamps = end - step * np.arange(12_000, 0, -1)  # 8.3 days at 1 minute: needs two requests
    values = np.sin(np.arange(len(timestamps)) / 50.0) + 2.0
    values[5000:5100] = np.nan  # a gap of 100 minutes
    series = [BackfillSeries("test_metric", {"service": "a", "code": "200"}, timestamps, values),
              BackfillSeries("test_metric", {"service": "b", "code": "500"}, timestamps, values * 2)]  # fmt: skip
    prometheus = start_prometheus(series)
    telemetry = RecordingTelemetry()
    reader = PrometheusReader(PrometheusConfig(url=prometheus.url, max_points_per_request=11000), telemetry)
    result = {s.labels["service"]: s for s in reader.query_range("test_metric", timestamps[0], timestamps[-1], step)}
    assert telemetry.outcomes == ["success", "success"]
    assert result["a"].labels == {"service": "a", "code": "200"}  # __name__ dropped, the rest kept
    a = result["a"]
    assert len(a.values) == len(timestamps)
    # Prometheus' 5-minute lookback fills the first 5 minutes of the gap; the rest stays missing, never zero
    assert np.all(np.isnan(a.values[5005:5100]))
    assert np.all(np.isfinite(a.values[:5000])) and np.all(np.isfinite(a.values[5100:]))
    observed = np.isfinite(values)
    assert np.allclose(a.values[observed], values[observed])
    assert np.allclose(result["b"].values[observed], 2 * values[observed])
    with pytest.raises(QueryError):
        reader.query_range("test_metric{", timestamps[0], timestamps[-1], step)
