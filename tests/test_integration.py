"""End to end against a real Prometheus with backfilled history: `once` and the `run` service."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from analyzer.prometheus.localprom import BackfillSeries, free_port, wait_http
from analyzer.synthetic import generate, inject_step

pytestmark = pytest.mark.integration
STEP = 300.0
NOW = np.floor(time.time() / STEP) * STEP


def history() -> list[BackfillSeries]:
    """checkout regresses +50% for the last 3 hours; search is clean; newbie has 1 day; flat never moves."""
    checkout = generate(days=23, seed=1, end=NOW)
    inject_step(checkout, NOW - 3 * 3600, 0.5)
    search = generate(days=23, seed=2, end=NOW)
    newbie = generate(days=1, seed=3, end=NOW)
    flat = generate(days=23, seed=4, end=NOW)
    return [
        BackfillSeries("latency_seconds", {"service": "checkout"}, checkout.timestamps, checkout.values),
        BackfillSeries("latency_seconds", {"service": "search"}, search.timestamps, search.values),
        BackfillSeries("latency_seconds", {"service": "newbie"}, newbie.timestamps, newbie.values),
        BackfillSeries("latency_seconds", {"service": "flat"}, flat.timestamps, np.full(len(flat.values), 0.2)),
    ]


def write_config(path: Path, url: str, score_every: str = "1m") -> Path:
    path.write_text(f"""
prometheus:
  url: {url}
  retries: 1
  backoff: 0.1s
schedule:
  score_every: {score_every}
  refit_every: 1h
  fit_workers: 2
targets:
  - name: latency
    query: latency_seconds
    kind: latency
  - name: broken
    query: "sum(latency_seconds"
""")
    return path


@pytest.fixture
def prometheus(start_prometheus):
    return start_prometheus(history())


def test_once_json_scores_statuses_and_a_bad_query(prometheus, tmp_path):
    config = write_config(tmp_path / "config.yml", prometheus.url)
    done = subprocess.run([sys.executable, "-m", "analyzer", "once", "--config", str(config), "--output", "json"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr  # one target failed, so the run reports failure
    results = {r["labels"].get("service", r["target"]): r for r in json.loads(done.stdout)}
    assert set(results["checkout"]) >= {"target", "labels", "status", "reason", "anomaly_score", "expected",
                                        "lower", "upper"}  # fmt: skip
    assert results["checkout"]["status"] == "ok" and results["checkout"]["anomaly_score"] > 1
    assert results["checkout"]["lower"] < results["checkout"]["expected"] < results["checkout"]["upper"]
    assert results["search"]["status"] == "ok" and results["search"]["anomaly_score"] < 1
    assert (results["newbie"]["status"], results["newbie"]["reason"]) == ("insufficient_data", "too_short")
    assert (results["flat"]["status"], results["flat"]["reason"]) == ("insufficient_data", "flat")
    assert all(r["target"] == "latency" for r in results.values())  # the broken target did not stop the other


def test_prometheus_url_flag_overrides_the_config(prometheus, tmp_path):
    config = write_config(tmp_path / "config.yml", "http://127.0.0.1:1")  # nothing listens there
    command = [sys.executable, "-m", "analyzer", "once", "--config", str(config), "--output", "json",
               "--prometheus-url", prometheus.url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert any(r["labels"].get("service") == "checkout" for r in json.loads(done.stdout))


def scrape(url: str) -> dict:
    body = requests.get(url, timeout=10).text
    return {f.name: f for f in text_string_to_metric_families(body)}


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError("condition not met in time")


def test_run_service_serves_scores_and_stops_cleanly_on_sigterm(prometheus, tmp_path):
    config = write_config(tmp_path / "config.yml", prometheus.url, score_every="2s")
    port = free_port()
    log = tmp_path / "service.log"
    with open(log, "w") as output:
        service = subprocess.Popen([sys.executable, "-m", "analyzer", "run", "--config", str(config), "--listen",
                                    f"127.0.0.1:{port}"], stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", 60, service)
        wait_http(f"{base}/readyz", 120, service)

        def scored_twice():
            families = scrape(f"{base}/metrics")
            runs = {(s.labels["task"], s.labels["outcome"]): s.value for s in families["perfsentinel_runs"].samples
                    if s.name.endswith("_total")}  # fmt: skip
            scored = runs[("refit", "success")] >= 1 and runs[("score", "success")] >= 2
            return families if scored and "perfsentinel_anomaly_score" in families else None

        families = wait_for(scored_twice, 180)
        scores = {s.labels["service"]: s.value for s in families["perfsentinel_anomaly_score"].samples}
        assert scores["checkout"] > 1 and scores["search"] < 1
        errors = {s.labels["target"]: s.value for s in families["perfsentinel_errors"].samples
                  if s.name.endswith("_total")}  # fmt: skip
        assert errors["broken"] >= 1
        request_samples = families["perfsentinel_prometheus_requests"].samples
        requests_by_outcome = {s.labels["outcome"]: s.value for s in request_samples if s.name.endswith("_total")}
        assert requests_by_outcome["success"] > 0 and requests_by_outcome["client_error"] > 0
        children = child_pids(service.pid)
        assert children  # the fit pool's processes
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0
        wait_for(lambda: not any(alive(pid) for pid in children), 30)  # no process outlives the service
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert "Traceback" not in log.read_text(), log.read_text()


def child_pids(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found] + [grand for child in found for grand in child_pids(int(child))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"  # a zombie has exited


def test_unreachable_prometheus_is_reported_through_metrics_not_a_crash(tmp_path):
    config = write_config(tmp_path / "config.yml", f"http://127.0.0.1:{free_port()}", score_every="1s")
    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "analyzer", "run", "--config", str(config), "--listen",
                                f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", 60, service)

        def failures_counted():
            families = scrape(f"{base}/metrics")
            outcomes = {s.labels["outcome"]: s.value for s in families["perfsentinel_prometheus_requests"].samples
                        if s.name.endswith("_total")}  # fmt: skip
            return families if outcomes["connection_error"] >= 4 else None

        families = wait_for(failures_counted, 60)
        errors = {s.labels["target"] for s in families["perfsentinel_errors"].samples if s.name.endswith("_total")}
        assert errors == {"latency", "broken"}
        assert service.poll() is None  # still serving
        stopping = time.monotonic()
        service.send_signal(signal.SIGTERM)  # while the refit is retrying with backoff
        assert service.wait(timeout=30) == 0
        assert time.monotonic() - stopping < 10
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
