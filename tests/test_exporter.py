"""Exposition: contract, label handling, `promtool check metrics`, and the HTTP endpoints."""

import subprocess

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from analyzer.results import ERROR, INSUFFICIENT_DATA, OK, SeriesResult, Snapshot, TargetOutcome
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
