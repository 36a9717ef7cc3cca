"""Reader: retries and error classification, request sizing, decoding, series identity. Against a small fake
Prometheus HTTP server (tests/fakeprom.py) for what a real one will not do on demand, and against a real
Prometheus for labels, gaps and long ranges."""

import json

import numpy as np
import pytest

from analyzer.config import PrometheusConfig
from analyzer.prometheus.decode import BadResponse, decode_matrix
from analyzer.prometheus.localprom import BackfillSeries, free_port
from analyzer.prometheus.reader import (
    BadAnswer,
    PrometheusReader,
    PrometheusUnavailable,
    QueryError,
    TooManySeries,
)
from tests.fakeprom import Behaviour, FakePrometheus, FakeSeries, seasonal

STEP = 60.0
END = 1_767_571_200.0


class RecordingTelemetry:
    def __init__(self):
        self.outcomes = []

    def prometheus_request(self, outcome, seconds):
        self.outcomes.append(outcome)


@pytest.fixture
def fake():
    with FakePrometheus() as server:
        yield server


def reader_for(url: str, **settings) -> tuple[PrometheusReader, RecordingTelemetry, list[float]]:
    telemetry, sleeps = RecordingTelemetry(), []
    config = PrometheusConfig(url=url, **{"retries": 3, "timeout": 5.0, **settings})
    return PrometheusReader(config, telemetry, sleep=sleeps.append), telemetry, sleeps


def fleet(count: int, name: str = "m") -> list[FakeSeries]:
    return [FakeSeries({"__name__": name, "pod": f"p{i}"}, seasonal(seed=i)) for i in range(count)]


# ---------------------------------------------------------------- retries and classification
def test_5xx_is_retried_with_growing_backoff_then_succeeds(fake):
    fake.behaviours["up"] = Behaviour(fleet(1), script=["http_503", "http_502", "http_500"])
    reader, telemetry, sleeps = reader_for(fake.url)
    (series,) = reader.query_range("up", END - 600, END, STEP)
    assert np.isfinite(series.values).all()
    assert telemetry.outcomes == ["server_error", "server_error", "server_error", "success"]
    assert len(sleeps) == 3 and sleeps[2] > sleeps[0]  # 0.5x2^2 vs 0.5x2^0 even with jitter in [0.5, 1]


def test_an_unreachable_prometheus_gives_up_after_retries_without_printing_the_password():
    reader, telemetry, sleeps = reader_for(f"http://user:s3cret@127.0.0.1:{free_port()}", retries=2)
    with pytest.raises(PrometheusUnavailable, match="failed 3 times") as raised:
        reader.query_range("up", END - 600, END, STEP)
    assert "s3cret" not in str(raised.value) and "user:***@" in str(raised.value)
    assert telemetry.outcomes == ["connection_error"] * 3 and len(sleeps) == 2


def test_a_slow_prometheus_times_out_and_is_retried(fake):
    fake.behaviours["up"] = Behaviour(fleet(1), delay=1.0)
    reader, telemetry, _ = reader_for(fake.url, timeout=0.2, retries=1)
    with pytest.raises(PrometheusUnavailable, match="timed out"):
        reader.query_range("up", END - 600, END, STEP)
    assert telemetry.outcomes == ["timeout", "timeout"]


def test_bad_promql_is_not_retried(fake):
    fake.behaviours["up{"] = Behaviour(fault="http_400")
    reader, telemetry, sleeps = reader_for(fake.url)
    with pytest.raises(QueryError, match="HTTP 400"):
        reader.query_range("up{", END - 600, END, STEP)
    assert sleeps == [] and telemetry.outcomes == ["client_error"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("html", "HTML or XML page"),
        ("truncated", "not Prometheus JSON"),
        ("status_error", "status 'error' \\(internal: proxy says no\\)"),
        ("vector", "expected a matrix \\(range query\\), got resultType 'vector'"),
        ("non_numeric", "is not a number"),
    ],
)
def test_a_200_answer_that_is_not_a_prometheus_matrix_is_a_bad_answer_named_and_counted(fake, fault, message):
    fake.behaviours["m"] = Behaviour(fleet(2), fault=fault)
    reader, telemetry, sleeps = reader_for(fake.url)
    with pytest.raises(BadAnswer, match=message):
        reader.query_range("m", END - 600, END, STEP)
    assert telemetry.outcomes == ["bad_response"] and sleeps == []  # a login page does not change on retry


# ---------------------------------------------------------------- request sizing
def test_requests_are_sized_by_samples_and_cover_every_point(fake):
    fake.behaviours["m"] = Behaviour(fleet(50))
    reader, _, _ = reader_for(fake.url, max_samples_per_request=20_000)
    start = END - 1999 * STEP
    found = reader.query_range("m", start, END, STEP)
    assert len(found) == 50 and all(np.isfinite(s.values).all() and s.values.size == 2000 for s in found)
    requests = fake.requests_for("m")
    assert max(r.samples for r in requests[1:]) <= 20_000  # the first is sized for the max_series guess
    assert sum(r.samples for r in requests) == 50 * 2000  # no point read twice
    expected = seasonal(seed=7)(found[0].timestamps)
    assert np.allclose(next(s for s in found if s.labels["pod"] == "p7").values, expected)


def test_prometheus_sample_limit_is_answered_by_splitting_not_by_failing(fake):
    fake.behaviours["m"] = Behaviour(fleet(40), max_samples=4_000)
    reader, telemetry, _ = reader_for(fake.url, max_samples_per_request=1_000_000)
    found = reader.query_range("m", END - 999 * STEP, END, STEP)
    assert len(found) == 40 and all(np.isfinite(s.values).all() for s in found)
    assert "client_error" in telemetry.outcomes  # the refused requests were made and split
    assert all(r.samples <= 4_000 for r in fake.requests_for("m"))


def test_an_answer_above_the_size_bound_is_split_and_one_that_cannot_be_split_fails(fake):
    fake.behaviours["m"] = Behaviour(fleet(20))
    reader, telemetry, _ = reader_for(fake.url, max_response_bytes=2**20, max_samples_per_request=10_000_000)
    assert len(reader.query_range("m", END - 9999 * STEP, END, STEP)) == 20
    assert "too_large" in telemetry.outcomes
    fake.behaviours["wide"] = Behaviour(fleet(40_000, "wide"))
    with pytest.raises(QueryError, match="even for one step"):
        reader.query_range("wide", END - STEP, END, STEP)


def test_more_series_than_max_series_fails_after_the_first_request(fake):
    fake.behaviours["m"] = Behaviour(fleet(30))
    reader, _, _ = reader_for(fake.url, max_samples_per_request=100_000)
    with pytest.raises(TooManySeries, match="more than 20 series"):
        reader.query_range("m", END - 9999 * STEP, END, STEP, max_series=20)
    assert len(fake.requests_for("m")) == 1


def test_answers_are_asked_for_uncompressed_unless_configured(fake):
    fake.behaviours["m"] = Behaviour(fleet(1))
    reader_for(fake.url)[0].query_range("m", END - 600, END, STEP)
    reader_for(fake.url, compression=True)[0].query_range("m", END - 600, END, STEP)
    plain, gzip = (r.headers.get("Accept-Encoding") for r in fake.requests_for("m"))
    assert plain == "identity" and "gzip" in gzip


def test_a_long_query_goes_in_a_form_body(fake):
    query = 'm{pod=~"' + "|".join(f"p{i}" for i in range(2000)) + '"}'
    fake.behaviours[query] = Behaviour(fleet(3))
    assert len(reader_for(fake.url)[0].query_range(query, END - 600, END, STEP)) == 3
    assert fake.requests_for(query)[0].method == "POST"


# ---------------------------------------------------------------- values and identity
def test_infinities_are_kept_and_nan_is_missing(fake):
    def values(times):
        out = np.ones_like(times)
        out[-1], out[-2], out[-3] = np.inf, -np.inf, np.nan
        return out

    fake.behaviours["m"] = Behaviour([FakeSeries({"pod": "a"}, values)])
    (series,) = reader_for(fake.url)[0].query_range("m", END - 9 * STEP, END, STEP)
    assert series.values[-1] == np.inf and series.values[-2] == -np.inf and np.isnan(series.values[-3])


def test_series_that_differ_only_in_their_metric_name_stay_apart(fake):
    names = ("node_memory_MemFree_bytes", "node_memory_Cached_bytes", "node_memory_MemAvailable_bytes")
    fake.behaviours["mem"] = Behaviour([FakeSeries({"__name__": n, "instance": "a"}, seasonal(seed=i))
                                        for i, n in enumerate(names)])  # fmt: skip
    found = reader_for(fake.url)[0].query_range("mem", END - 600, END, STEP)
    assert sorted(s.labels["metric_name"] for s in found) == sorted(names)
    assert all(s.labels["instance"] == "a" and "__name__" not in s.labels for s in found)
    fake.behaviours["one"] = Behaviour([FakeSeries({"__name__": "x", "instance": "a", "metric_name": "mine"},
                                                   seasonal())])  # fmt: skip
    (single,) = reader_for(fake.url)[0].query_range("one", END - 600, END, STEP)
    assert single.labels == {"instance": "a", "metric_name": "mine"}  # one name: dropped as before


def test_the_fast_decoder_and_json_agree():
    rng = np.random.default_rng(3)
    result = []
    for i in range(30):
        values = rng.normal(size=50)
        values[rng.integers(0, 50, 3)] = np.nan
        pairs = [[1e9 + 15 * j, "NaN" if np.isnan(v) else repr(float(v))] for j, v in enumerate(values)]
        result.append({"metric": {"__name__": "x", "a": f'v"{i}]]'}, "values": pairs})
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    fast = decode_matrix(json.dumps(body, separators=(",", ":")))
    general = decode_matrix(json.dumps(body, indent=1))  # whitespace: the general path
    assert fast.labels == general.labels == [item["metric"] for item in result]
    for a, b in zip(fast.values + fast.times, general.values + general.times, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(BadResponse, match="empty body"):
        decode_matrix("")


# ---------------------------------------------------------------- a real Prometheus
@pytest.mark.integration
def test_real_prometheus_labels_gaps_and_split_ranges(start_prometheus):
    step = 60.0
    timestamps = END - step * np.arange(12_000, 0, -1)  # 8.3 days at 1 minute: needs two requests
    values = np.sin(np.arange(len(timestamps)) / 50.0) + 2.0
    values[5000:5100] = np.nan  # a gap of 100 minutes
    series = [BackfillSeries("test_metric", {"service": "a", "code": "200"}, timestamps, values),
              BackfillSeries("test_metric", {"service": "b", "code": "500"}, timestamps, values * 2)]  # fmt: skip
    prometheus = start_prometheus(series)
    telemetry = RecordingTelemetry()
    reader = PrometheusReader(PrometheusConfig(url=prometheus.url, max_points_per_request=11000), telemetry)
    result = {s.labels["service"]: s for s in reader.query_range("test_metric", timestamps[0], timestamps[-1], step)}
    # a first request sized for an unknown series count (max_series), then the points-per-series limit
    assert telemetry.outcomes == ["success"] * 3
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


@pytest.mark.integration
def test_a_real_prometheus_sample_limit_is_answered_by_splitting(start_prometheus):
    """Prometheus started with a tiny --query.max-samples refuses the requests as sized (HTTP 422 "query processing
    would load too many samples"); the reader splits them until they pass, and reads every point."""
    step = 60.0
    timestamps = END - step * np.arange(600, 0, -1)
    series = [BackfillSeries("limited", {"pod": f"p{i}"}, timestamps, np.full(timestamps.size, float(i)))
              for i in range(20)]  # fmt: skip
    prometheus = start_prometheus(series, extra_args=["--query.max-samples=1000"])
    telemetry = RecordingTelemetry()
    reader = PrometheusReader(PrometheusConfig(url=prometheus.url, max_samples_per_request=100_000), telemetry)
    found = reader.query_range("limited", timestamps[0], timestamps[-1], step)
    assert len(found) == 20 and all(np.all(s.values == float(s.labels["pod"][1:])) for s in found)
    assert "client_error" in telemetry.outcomes and telemetry.outcomes[-1] == "success"
