"""Regression verdicts end to end against a real Prometheus: backfilled history with a known step, one
analysis pass, the verdict fields, the event named as a cause, and `promtool check metrics` on the exposition."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np
import pytest

from analyzer.config import build_config
from analyzer.prometheus.localprom import BackfillSeries
from analyzer.prometheus.reader import PrometheusReader
from analyzer.service.pipeline import Analyzer
from analyzer.synthetic import generate, inject_step
from exporter.snapshot import snapshot_families
from exporter.text import render

pytestmark = pytest.mark.integration
STEP = 300.0
NOW = np.floor(time.time() / STEP) * STEP
STEP_START = NOW - 2 * 3600


def history() -> list[BackfillSeries]:
    """checkout +30% for the last 2 hours after a deploy of v2; search clean; throughput of checkout rose."""
    checkout = generate(days=23, seed=1, end=NOW, noise=0.04)
    inject_step(checkout, STEP_START, 0.3)
    search = generate(days=23, seed=2, end=NOW, noise=0.04)
    rps = generate(days=23, seed=3, end=NOW, noise=0.04, level=100.0)
    inject_step(rps, STEP_START, 0.3)
    deploys = np.arange(NOW - 6 * 3600, NOW + 1, STEP)
    build = np.where(deploys >= STEP_START - 600, 2.0, 1.0)
    return [
        BackfillSeries("latency_seconds", {"service": "checkout"}, checkout.timestamps, checkout.values),
        BackfillSeries("latency_seconds", {"service": "search"}, search.timestamps, search.values),
        BackfillSeries("requests_per_second", {"service": "checkout"}, rps.timestamps, rps.values),
        BackfillSeries("app_build", {"service": "checkout"}, deploys, build),
    ]


def test_one_pass_gives_verdicts_events_and_clean_metrics(start_prometheus):
    prometheus = start_prometheus(history())
    config = build_config({
        "prometheus": {"url": prometheus.url, "retries": 1},
        "targets": [
            {"name": "latency", "query": "latency_seconds", "kind": "latency", "history": "21d",
             "events_query": 'label_replace(changes(app_build[15m]) > 0, "version", "build-2", "", "")'},
            {"name": "rps", "query": "requests_per_second", "kind": "throughput", "history": "21d"},
        ],
    })  # fmt: skip
    analyzer = Analyzer(config, PrometheusReader(config.prometheus), clock=lambda: NOW + 1)
    analyzer.refit()
    snapshot = analyzer.score()
    results = {(r.target, r.labels["service"]): r for r in snapshot.results}
    checkout = results[("latency", "checkout")]
    assert checkout.verdict == "significant" and checkout.severity == 2, checkout
    assert 20 < checkout.change_pct < 40 and checkout.change_ci_low < checkout.change_pct < checkout.change_ci_high
    assert checkout.q_value < 0.01 and checkout.confidence > 0.99 and checkout.effect_size > 1
    assert checkout.drift_score > 3
    assert abs(checkout.regression_start - STEP_START) <= 2 * STEP
    assert checkout.regression_event == "build-2"
    assert checkout.trend in ("improving", "stable", "degrading", "volatile")
    search = results[("latency", "search")]
    assert search.severity == 0 and search.verdict in ("none", "potential")
    rps = results[("rps", "checkout")]  # throughput rose: an improvement, no verdict
    assert rps.severity == 0 and rps.change_pct < -20
    exposition = render(snapshot_families(snapshot))
    text = exposition.decode()
    assert 'perfsentinel_regression_severity{service="checkout",target="latency"} 2' in text
    assert 'perfsentinel_regression_event_info{service="checkout",target="latency",event="build-2"} 1' in text
    assert "perfsentinel_regression_start_timestamp_seconds{" in text
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
