"""The fault matrix of the data path (issue 26): each target of one config meets one fault of a small fake
Prometheus (tests/fakeprom.py), beside a healthy target, and the real ``once`` and the real service are run
against it. Every fault stays in the target it hits: that target is named and counted, the others are analysed
and exported as usual, and nothing prints a traceback."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from analyzer.prometheus.localprom import free_port, wait_http
from tests.fakeprom import Behaviour, FakePrometheus, FakeSeries, seasonal
from tests.procs import wait_for

STEP = 300.0
NOW = math.floor(time.time() / STEP) * STEP
SINCE = NOW - 3 * 86400.0


def healthy(count: int = 3, name: str = "latency_seconds") -> list[FakeSeries]:
    return [FakeSeries({"__name__": name, "service": f"s{i}"}, seasonal(0.2, seed=i), SINCE) for i in range(count)]


def infinite_latest(times: np.ndarray) -> np.ndarray:
    values = seasonal(0.2)(times)
    return np.where(times >= NOW - STEP, np.inf, values)


def nan_latest(times: np.ndarray) -> np.ndarray:
    values = seasonal(0.2)(times)
    return np.where(times >= NOW - STEP, np.nan, values)


# target name -> (query behaviour, what `once` must say about it on stderr; None: analysed without complaint)
MATRIX: dict[str, tuple[Behaviour, str | None]] = {
    "good": (Behaviour(healthy()), None),
    "html_login": (Behaviour(healthy(), fault="html"), "HTML or XML page"),
    "truncated": (Behaviour(healthy(), fault="truncated"), "not Prometheus JSON"),
    "status_error": (Behaviour(healthy(), fault="status_error"), "status 'error'"),
    "vector": (Behaviour(healthy(), fault="vector"), "got resultType 'vector'"),
    "non_numeric": (Behaviour(healthy(), fault="non_numeric"), "is not a number"),
    "bad_promql": (Behaviour(fault="http_400"), "HTTP 400"),
    "unavailable": (Behaviour(fault="http_503"), "failed 2 times"),
    "slow": (Behaviour(healthy(), delay=3.0), "timed out"),
    "exploding": (Behaviour(healthy(60)), "more than 50 series"),
    "typo": (Behaviour([]), "query returned no series"),
    "names": (
        Behaviour(
            [
                FakeSeries({"__name__": n, "instance": "a"}, seasonal(seed=i), SINCE)
                for i, n in enumerate(("mem_free_bytes", "mem_cached_bytes"))
            ]
        ),
        None,
    ),  # fmt: skip
    "otel_labels": (
        Behaviour([FakeSeries({"http.method": "GET", "0code": "200", "名前": "x"}, seasonal(), SINCE)]),
        None,
    ),  # fmt: skip
    "inf_latest": (Behaviour([FakeSeries({"le": "+Inf", "service": "a"}, infinite_latest, SINCE)]), None),
    "nan_latest": (Behaviour([FakeSeries({"service": "a"}, nan_latest, SINCE)]), None),
    "collision": (
        Behaviour(
            [
                FakeSeries({"__name__": "a", "metric_name": "b"}, seasonal(), SINCE),
                FakeSeries({"__name__": "c", "k": "v"}, seasonal(), SINCE),
                FakeSeries({"metric_name": "b", "exported_metric_name": "a"}, seasonal(), SINCE),
            ]
        ),
        "would both be exported as",
    ),  # fmt: skip
    "warming": (Behaviour([FakeSeries({"service": "new"}, seasonal(), NOW - 35 * 60)]), None),
    # data that started seconds ago has no sample on a daily grid yet (a Prometheus that just started)
    "fresh": (Behaviour([FakeSeries({"service": "new"}, seasonal(), time.time() - 5)]), "query returned no series"),
}
DAILY = ("fresh",)  # targets read at step 1d (history 12d)
FAILING = [name for name, (_, said) in MATRIX.items() if said and said != "query returned no series"]


def write_config(path: Path, url: str, score_every: str = "1m") -> Path:
    targets = "".join(f"""
  - name: {name}
    query: {name}
    kind: latency
    model: profile
    history: {"12d" if name in DAILY else "3d"}
    step: {"1d" if name in DAILY else "5m"}
    max_series: 50
""" for name in MATRIX)  # fmt: skip
    path.write_text(f"""
prometheus:
  url: {url}
  retries: 1
  backoff: 0.1s
  timeout: 1s
schedule:
  score_every: {score_every}
  fit_workers: 1
targets:{targets}""")
    return path


@pytest.fixture(scope="module")
def fake():
    with FakePrometheus() as server:
        for name, (behaviour, _) in MATRIX.items():
            server.behaviours[name] = behaviour
        yield server


@pytest.fixture(scope="module")
def once(fake, tmp_path_factory) -> subprocess.CompletedProcess:
    config = write_config(tmp_path_factory.mktemp("once") / "config.yml", fake.url)
    return subprocess.run([sys.executable, "-m", "analyzer", "once", "--config", str(config), "--output", "json"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def results_of(once: subprocess.CompletedProcess, target: str) -> list[dict]:
    return [row for row in json.loads(once.stdout) if row["target"] == target]


def test_once_exits_1_and_names_each_failing_target_with_its_problem_without_a_traceback(once):
    assert once.returncode == 1, once.stderr
    assert "Traceback" not in once.stderr
    for name, (_, said) in MATRIX.items():
        named = [line for line in once.stderr.splitlines() if f"perfsentinel: target {name}:" in line]
        if said is None:
            assert not named, (name, named)
        else:
            assert len(named) == 1 and said in named[0], (name, once.stderr)


def test_the_healthy_target_and_the_odd_but_valid_ones_are_analysed(once):
    for name in ("good", "names", "otel_labels", "inf_latest", "nan_latest"):
        rows = results_of(once, name)
        assert rows and all(row["status"] == "ok" for row in rows), (name, rows)
    assert len(results_of(once, "good")) == 3


def test_a_failing_target_reports_each_known_series_as_an_error_or_nothing(once):
    for name in FAILING:
        assert all(row["status"] == "error" for row in results_of(once, name)), name


def test_series_that_differ_only_in_their_name_are_two_series(once):
    rows = results_of(once, "names")
    assert sorted(row["labels"]["metric_name"] for row in rows) == ["mem_cached_bytes", "mem_free_bytes"]


def test_a_warming_series_says_what_history_it_needs_and_has(once):
    (row,) = results_of(once, "warming")
    assert row["status"] == "insufficient_data" and row["reason"] == "too_short"
    assert re.fullmatch(r"needs 2d of history, has (35|40|45)m", row["note"]), row["note"]
    assert row["history_seconds"] in (2100.0, 2400.0, 2700.0)
    assert re.search(r"target warming: 1 of 1 series are warming up \(need 2d of history", once.stderr)


def test_an_empty_answer_from_data_that_just_started_says_so(once):
    assert "target fresh: query returned no series on the 1d grid yet; an instant query finds 1 now" in once.stderr


def test_an_infinite_latest_sample_is_an_anomaly_and_a_missing_one_is_not(once):
    (infinite,) = results_of(once, "inf_latest")
    assert infinite["value"] == "+Inf" and infinite["anomaly_score"] == "+Inf"
    (missing,) = results_of(once, "nan_latest")
    assert missing["timestamp"] <= NOW - 2 * STEP and math.isfinite(missing["value"])  # an earlier sample, not NaN


@pytest.mark.integration
def test_the_service_exports_every_healthy_target_and_counts_each_fault(fake, tmp_path):
    config = write_config(tmp_path / "config.yml", fake.url, score_every="2s")
    port = free_port()
    service = subprocess.Popen([sys.executable, "-m", "analyzer", "run", "--config", str(config), "--listen",
                                f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", 120, service)
        text = wait_for(lambda: _scrape_after_two_runs(port), 120)
    finally:
        service.terminate()
        _, stderr = service.communicate(timeout=60)
    assert service.returncode == 0 and "Traceback" not in stderr
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    success = {s.labels["target"]: s.value for s in samples if s.name == "perfsentinel_target_query_success"}
    assert {t for t, v in success.items() if v == 0} == set(FAILING)
    errors = {s.labels["target"] for s in samples if s.name == "perfsentinel_errors_total" and s.value > 0
              and s.labels["stage"] == "query"}  # fmt: skip
    assert errors == set(FAILING)
    outcomes = {s.labels["outcome"]: s.value for s in samples if s.name == "perfsentinel_prometheus_requests_total"}
    assert outcomes["bad_response"] >= 5 and outcomes["timeout"] >= 2 and outcomes["server_error"] >= 2
    returned = {s.labels["target"]: s.value for s in samples if s.name == "perfsentinel_target_series"}
    assert returned["typo"] == 0 and returned["good"] == 3 and returned["names"] == 2 and returned["warming"] == 1
    scored = {s.labels["target"] for s in samples if s.name == "perfsentinel_anomaly_score"}
    assert scored == {"good", "names", "otel_labels", "inf_latest", "nan_latest"}
    for name in FAILING + ["typo", "fresh"]:  # one line per target and problem, however many runs failed
        lines = [line.split(" WARNING ", 1)[-1] for line in stderr.splitlines() if f"target {name}:" in line]
        assert lines and len(lines) == len(set(lines)), (name, lines)
    promtool = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert promtool.returncode == 0, promtool.stdout + promtool.stderr


def _scrape_after_two_runs(port: int) -> str | None:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    runs = [s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == "perfsentinel_runs_total" and s.labels.get("task") == "score"]  # fmt: skip
    return text if sum(runs) >= 3 else None
