"""Exposition: contract, label handling, `promtool check metrics`, and the HTTP endpoints."""

import math
import subprocess

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from analyzer.results import ERROR, INSUFFICIENT_DATA, OK, SeriesResult, Snapshot, TargetOutcome
from exporter.families import LabelCache
from exporter.selfmetrics import SelfMetrics
from exporter.server import Exposition, MetricsServer, render_snapshot
from tests.conftest import require_tools


def sample_snapshot() -> Snapshot:
    results = [
        SeriesResult("api_latency_p95", {"service": "checkout", "target": "clash"}, OK, "", 1.7e9, 0.36, 0.27,
                     0.24, 0.31, 2.26, "stl", "weekly"),
        SeriesResult("api_latency_p95", {"service": 'we"ird\\name\n'}, INSUFFICIENT_DATA, "too_short"),
        SeriesResult("errors", {"service": "cart"}, ERROR, "query_failed"),
    ]  # fmt: skip
    return Snapshot(1.7e9, results, [TargetOutcome("api_latency_p95", True, "", 2), TargetOutcome("errors", False)])


def parsed(body: bytes) -> dict:
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def test_contract_families_labels_and_values():
    families = parsed(render_snapshot(sample_snapshot()))
    score = families["perfsentinel_anomaly_score"].samples
    assert len(score) == 1  # series without a score export no sample, not a fake zero
    assert score[0].labels == {"service": "checkout", "exported_target": "clash", "target": "api_latency_p95"}
    assert score[0].value == pytest.approx(2.26)
    bounds = {s.labels["bound"]: s.value for s in families["perfsentinel_expected_value"].samples}
    assert bounds == {"expected": 0.27, "lower": 0.24, "upper": 0.31}
    statuses = {(s.labels["service"], s.labels["status"], s.labels["reason"]) for s in
                families["perfsentinel_series_status"].samples}  # fmt: skip
    assert statuses == {("checkout", "ok", ""), ('we"ird\\name\n', "insufficient_data", "too_short"),
                        ("cart", "error", "query_failed")}  # fmt: skip
    up = {s.labels["target"]: s.value for s in families["perfsentinel_target_query_success"].samples}
    assert up == {"api_latency_p95": 1.0, "errors": 0.0}
    counts = {(s.labels["target"], s.labels["status"]): s.value for s in families["perfsentinel_series"].samples}
    assert counts[("api_latency_p95", "ok")] == 1 and counts[("api_latency_p95", "insufficient_data")] == 1


def test_exposition_passes_promtool_check_metrics():
    require_tools("promtool")
    telemetry = SelfMetrics()
    telemetry.prometheus_request("success", 0.05)
    telemetry.fit_finished("stl", "success", 0.04)
    telemetry.fallback("stl", "profile")
    telemetry.run_finished("refit", "success", 3.0)
    telemetry.stage_error("query", "errors")
    exposition = Exposition(telemetry)
    exposition.publish(sample_snapshot())
    check = subprocess.run(["promtool", "check", "metrics"], input=exposition.body(), capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == b"" and check.stderr == b""  # no lint warnings either


def test_http_endpoints_ready_only_after_an_analysis():
    exposition = Exposition(SelfMetrics())
    server = MetricsServer(exposition, "127.0.0.1", 0)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 503
        before = requests.get(f"{base}/metrics", timeout=5)
        assert before.status_code == 200 and b"perfsentinel_anomaly_score" not in before.content
        exposition.publish(sample_snapshot())
        assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
        after = requests.get(f"{base}/metrics", timeout=5)
        assert after.headers["Content-Type"].startswith("text/plain")
        assert "perfsentinel_anomaly_score" in parsed(after.content)
        assert "perfsentinel_runs" in parsed(after.content)  # self-monitoring served beside the analysis
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
    finally:
        server.stop()


def test_label_cache_keeps_label_sets_but_never_stale_values_or_series():
    cache = LabelCache()
    first = Snapshot(1.7e9, [SeriesResult("t", {"service": "a"}, OK, "", 1.7e9, 1.0, 1.0, 0.5, 1.5, 0.1)], [])
    render_snapshot(first, cache)
    second = Snapshot(1.7e9, [
        SeriesResult("t", {"service": "a"}, OK, "", 1.7e9 + 60, 2.0, 1.0, 0.5, 1.5, 3.5),
        SeriesResult("t", {"service": "b"}, OK, "", 1.7e9 + 60, 9.0, 1.0, 0.5, 1.5, 0.0),
    ], [])  # fmt: skip
    scores = {s.labels["service"]: s.value for s in parsed(render_snapshot(second, cache))[
        "perfsentinel_anomaly_score"].samples}  # fmt: skip
    assert scores == {"a": 3.5, "b": 0.0}
    third = Snapshot(1.7e9, [SeriesResult("t", {"service": "b"}, OK, "", 1.7e9 + 120, 9.0, 1.0, 0.5, 1.5, 0.2)], [])
    families = parsed(render_snapshot(third, cache))
    assert [s.labels["service"] for s in families["perfsentinel_anomaly_score"].samples] == ["b"]


def test_numpy_scalars_infinities_and_nan_render_as_prometheus_numbers():
    results = [
        SeriesResult("t", {"service": "np"}, OK, "", 1.7e9, np.float64(0.25), 0.2, 0.1, 0.3, np.float64(1.5),
                     severity=np.int64(2)),
        SeriesResult("t", {"service": "inf"}, OK, "", 1.7e9, 1.0, 0.2, 0.2, 0.2, math.inf, drift_score=math.nan),
    ]  # fmt: skip
    text = render_snapshot(Snapshot(1.7e9, results, [])).decode()
    assert 'perfsentinel_anomaly_score{service="np",target="t"} 1.5\n' in text
    assert 'perfsentinel_observed_value{service="np",target="t"} 0.25\n' in text
    assert 'perfsentinel_regression_severity{service="np",target="t"} 2' in text
    assert 'perfsentinel_anomaly_score{service="inf",target="t"} +Inf\n' in text
    assert 'perfsentinel_drift_score{service="inf"' not in text  # NaN: no sample, not a fake value
    scores = {s.labels["service"]: s.value for s in parsed(text.encode())["perfsentinel_anomaly_score"].samples}
    assert scores == {"np": 1.5, "inf": math.inf}
