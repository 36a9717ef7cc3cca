"""The real service against a real Prometheus that goes away and comes back (issue 26.11): while every target
fails, score runs are published (each target's error visible) but count as failed, so
perfsentinel_last_success_timestamp_seconds{task="score"} (what PerfSentinelAnalysisStale follows) stops moving;
the first run after Prometheus is back succeeds again. rules/tests/selfmonitoring_test.yml holds the alert itself."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from analyzer.prometheus.localprom import BackfillSeries, free_port, wait_http
from analyzer.synthetic import generate
from tests.procs import killed_if_left, stop_cleanly, wait_for

pytestmark = pytest.mark.integration


def history() -> list[BackfillSeries]:
    end = np.floor(time.time() / 300) * 300
    found = []
    for number, service in enumerate(("checkout", "search")):
        series = generate(days=3, seed=number, end=end)
        found.append(BackfillSeries("latency_seconds", {"service": service}, series.timestamps, series.values))
    return found


def write_config(path: Path, url: str) -> Path:
    path.write_text(f"""
prometheus:
  url: {url}
  retries: 0
  timeout: 2s
schedule:
  score_every: 1s
  refit_every: 1h
  fit_workers: 1
targets:
  - name: latency
    query: latency_seconds
    model: profile
  - name: errors
    query: latency_seconds * 0
    model: profile
""")
    return path


class Scrape:
    def __init__(self, url: str) -> None:
        families = {f.name: f for f in text_string_to_metric_families(requests.get(url, timeout=10).text)}
        samples = [s for family in families.values() for s in family.samples]
        self.runs = {(s.labels["task"], s.labels["outcome"]): s.value for s in samples
                     if s.name == "perfsentinel_runs_total"}  # fmt: skip
        self.last_success = {s.labels["task"]: s.value for s in samples
                             if s.name == "perfsentinel_last_success_timestamp_seconds"}  # fmt: skip
        analysis = [s.value for s in samples if s.name == "perfsentinel_last_analysis_timestamp_seconds"]
        self.last_analysis = analysis[0] if analysis else None
        self.query_success = {s.labels["target"]: s.value for s in samples
                              if s.name == "perfsentinel_target_query_success"}  # fmt: skip

    def score_runs(self, outcome: str) -> float:
        return self.runs.get(("score", outcome), 0.0)


def test_score_runs_fail_while_prometheus_is_down_and_succeed_when_it_is_back(start_prometheus, tmp_path: Path):
    prometheus = start_prometheus(history())
    config = write_config(tmp_path / "config.yml", prometheus.url)
    port = free_port()
    metrics = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "service.log"
    with open(log, "w") as output:
        service = subprocess.Popen([sys.executable, "-m", "analyzer", "run", "--config", str(config), "--listen",
                                    f"127.0.0.1:{port}"], stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    with killed_if_left(service):
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, service)
        healthy = wait_for(lambda: (s := Scrape(metrics)).score_runs("success") >= 2 and s, 120, 0.5)
        assert healthy, log.read_text()
        assert healthy.score_runs("failure") == 0 and "score" in healthy.last_success

        prometheus.stop()  # the outage
        outage = wait_for(lambda: (s := Scrape(metrics)).score_runs("failure") >= 3 and s, 60, 0.5)
        assert outage, log.read_text()
        time.sleep(2.5)  # more failed runs: the analysis is still published, its success time stands still
        later = Scrape(metrics)
        assert later.score_runs("failure") > outage.score_runs("failure")
        assert later.last_success["score"] == outage.last_success["score"]
        assert later.last_analysis > outage.last_analysis  # published all the same, with every target's error
        assert later.query_success == {"latency": 0.0, "errors": 0.0}
        assert time.time() - later.last_success["score"] >= 2.5

        prometheus.start()  # back, on the same port and data
        recovered = wait_for(lambda: (s := Scrape(metrics)).last_success["score"] > later.last_success["score"] and s,
                             60, 0.5)  # fmt: skip
        assert recovered, log.read_text()
        assert recovered.score_runs("success") > later.score_runs("success")
        assert recovered.query_success["latency"] == 1.0
        stop_cleanly(service)
    text = log.read_text()
    assert "Traceback" not in text and "score run failed: no target could be read" in text, text
