"""Exposition: contract, label handling, `promtool check metrics`, and the HTTP endpoints."""

import math
import random
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from analyzer.results import ERROR, INSUFFICIENT_DATA, OK, SeriesResult, Snapshot, TargetOutcome
from exporter.families import LabelCache, classic_name
from exporter.selfmetrics import SelfMetrics
from exporter.server import Exposition, Limits, MetricsServer, render_snapshot
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


# ---------------------------------------------------------------- label names and values
AWKWARD_NAMES = ["http.method", "http_method", "0abc", "key_0abc", "a-b", "a_b", "a.b", "名前", "key__", "", "key_",
                 "service.name", "_x", "_x.y", "target", "exported_target", "exported_target_2", "model",
                 "trained.from", "renamed_labels", "job", "le"]  # fmt: skip
AWKWARD_VALUES = ["x", "", 'q"uote', "back\\slash", "new\nline", "名前", "lone \ud800 surrogate", "tab\tcr\r",
                  "a,b=c}", "\\n", "y"]  # fmt: skip


def prometheus_identity(labels: dict[str, str]) -> frozenset:
    """A label set as Prometheus stores it: a label with an empty value is no label."""
    return frozenset((k, v) for k, v in labels.items() if v != "")


def awkward_snapshot(seed: int, count: int) -> Snapshot:
    """``count`` distinct series (as Prometheus tells series apart) with random label sets of the awkward names
    and values, every field filled."""
    rng = random.Random(seed)
    results, seen = [], set()
    while len(results) < count:
        names = rng.sample(AWKWARD_NAMES, rng.randint(0, 4))
        labels = {name: rng.choice(AWKWARD_VALUES) for name in names}
        target, i = rng.choice(["t1", "t.2"]), len(results)
        if (target, prometheus_identity(labels)) in seen:
            continue
        seen.add((target, prometheus_identity(labels)))
        results.append(SeriesResult(target, labels, OK, "", 1.7e9, 0.3, 0.25, 0.2, 0.3, 1.0 + i, "stl", "weekly",
                                    drift_score=0.1, baseline_version=1, baseline_age_seconds=60.0,
                                    baseline_reason="initial", baseline_trained_from=1.69e9,
                                    baseline_trained_to=1.7e9))  # fmt: skip
    return Snapshot(1.7e9, results, [TargetOutcome("t1", True), TargetOutcome("t.2", True)])


@pytest.mark.parametrize(
    ("name", "exported"),
    [("http.method", "http_method"), ("service.name", "service_name"), ("a-b", "a_b"), ("0abc", "key_0abc"),
     ("名前", "key__"), ("", "key_"), ("_x.y", "key_x_y"), ("__x.y", "key__x_y"), ("_valid", "_valid"),
     ("Valid_9", "Valid_9")],
)  # fmt: skip
def test_label_names_are_translated_as_prometheus_translates_otlp_attributes(name: str, exported: str):
    assert classic_name(name) == exported
    text = render_snapshot(Snapshot(1.7e9, [SeriesResult("t", {name: "v"}, OK, "", 1.7e9, 1.0, 1.0, 0.5, 1.5, 0.5)],
                                    [])).decode()  # fmt: skip
    assert f'perfsentinel_anomaly_score{{{exported}="v",target="t"}} 0.5\n' in text


def test_colliding_names_keep_every_value_and_valid_names_are_never_renamed():
    result = SeriesResult("t", {"a.b": "dot", "a_b": "underscore", "a-b": "dash", "target": "t0",
                                "exported_target": "e"}, OK, "", 1.7e9, 1.0, 1.0, 0.5, 1.5, 0.5)  # fmt: skip
    (sample,) = parsed(render_snapshot(Snapshot(1.7e9, [result], [])))["perfsentinel_anomaly_score"].samples
    # kept: the valid names; renamed in sorted order of the input names ("a-b" < "a.b" < "target")
    assert sample.labels == {"a_b": "underscore", "a_b_2": "dash", "a_b_3": "dot", "exported_target": "e",
                             "exported_target_2": "t0", "target": "t"}  # fmt: skip


def test_series_that_rename_to_the_same_labels_stay_apart():
    results = [SeriesResult("t", labels, OK, "", 1.7e9, 1.0, 1.0, 0.5, 1.5, score, baseline_version=1)
               for score, labels in enumerate([{"a.b": "x"}, {"a_b": "x"}, {"a-b": "x"}, {"target": "x"},
                                               {"exported_target": "x"}])]  # fmt: skip
    cache = LabelCache()
    for _ in range(2):  # the second render takes the label sets from the cache
        families = parsed(render_snapshot(Snapshot(1.7e9, results, []), cache))
        scores = {frozenset(s.labels.items()): s.value for s in families["perfsentinel_anomaly_score"].samples}
        assert scores == {
            frozenset({"a_b": "x", "target": "t", "renamed_labels": '{"a_b":"a.b"}'}.items()): 0.0,
            frozenset({"a_b": "x", "target": "t"}.items()): 1.0,  # no renamed label: keeps its label set
            frozenset({"a_b": "x", "target": "t", "renamed_labels": '{"a_b":"a-b"}'}.items()): 2.0,
            frozenset(
                {"exported_target": "x", "target": "t", "renamed_labels": '{"exported_target":"target"}'}.items()
            ): 3.0,  # fmt: skip
            frozenset({"exported_target": "x", "target": "t"}.items()): 4.0,
        }
        assert len({frozenset(s.labels.items()) for s in families["perfsentinel_baseline_info"].samples}) == 5


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_awkward_labels_give_a_valid_exposition_with_one_series_per_input_series(seed: int):
    require_tools("promtool")
    distinct = 400
    snapshot = awkward_snapshot(seed, distinct)
    telemetry = SelfMetrics()
    telemetry.prometheus_request("success", 0.05)
    telemetry.stage_error("query", "t.2")
    exposition = Exposition(telemetry)
    exposition.publish(snapshot)
    body = exposition.body()
    check = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout == b"" and check.stderr == b""
    families = parsed(body)
    assert "perfsentinel_runs" in families  # the self-monitoring is served and parses too
    for name in ("perfsentinel_anomaly_score", "perfsentinel_observed_value", "perfsentinel_baseline_info"):
        exported = {prometheus_identity(s.labels) for s in families[name].samples}
        assert len(exported) == distinct == len(families[name].samples), name
    expected = {prometheus_identity(s.labels) for s in families["perfsentinel_expected_value"].samples}
    assert len(expected) == 3 * distinct


def test_label_values_are_escaped_for_the_text_format():
    values = ['q"uote', "back\\slash", "new\nline", "名前 ünïcødé", "tab\tcr\r", "\\n literally"]
    results = [SeriesResult("t", {"v": value}, OK, "", 1.7e9, 1.0, 1.0, 0.5, 1.5, float(i))
               for i, value in enumerate(values)]  # fmt: skip
    samples = parsed(render_snapshot(Snapshot(1.7e9, results, [])))["perfsentinel_anomaly_score"].samples
    assert {s.labels["v"]: s.value for s in samples} == {value: float(i) for i, value in enumerate(values)}
    lone = render_snapshot(Snapshot(1.7e9, [SeriesResult("t", {"v": "a\udc80b"}, OK, "", 1.7e9, 1.0, 1.0, 0.5,
                                                         1.5, 1.0)], []))  # fmt: skip
    assert b'{v="a?b",target="t"}' in lone  # not UTF-8: replaced, and the rest of the body still renders


# ---------------------------------------------------------------- readiness and HTTP limits
def test_ready_only_after_an_analysis_in_which_a_target_succeeded():
    exposition = Exposition(SelfMetrics())
    exposition.publish(Snapshot(1.7e9, [], []))  # nothing analysed
    assert not exposition.ready
    failed = SeriesResult("errors", {"service": "cart"}, ERROR, "query_failed")
    exposition.publish(Snapshot(1.7e9, [failed], [TargetOutcome("errors", False, "timeout")]))
    assert not exposition.ready
    exposition.publish(Snapshot(1.7e9, [failed], [TargetOutcome("errors", False), TargetOutcome("up", True)]))
    assert exposition.ready
    exposition.publish(Snapshot(1.7e9, [failed], [TargetOutcome("errors", False)]))
    assert exposition.ready  # it was ready once: a later outage shows in target_query_success, not in /readyz


@pytest.fixture
def served():
    """Start a MetricsServer (with the given limits) on a free port; stopped after the test."""
    servers = []

    def start(limits: Limits | None = None, exposition: Exposition | None = None) -> MetricsServer:
        server = MetricsServer(exposition or Exposition(SelfMetrics()), "127.0.0.1", 0, limits=limits)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def raw_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_slowloris_holds_no_threads_and_never_locks_a_scrape_out(served):
    """500 connections that send half a request head: no thread each, real scrapes answered meanwhile (the
    connection cap closes the longest-waiting idle ones), and every idle one closed after the head timeout."""
    limits = Limits(header_timeout=2.0, max_connections=64)
    server = served(limits)
    base = f"http://127.0.0.1:{server.port}"
    assert requests.get(f"{base}/metrics", timeout=5).status_code == 200
    threads_before = threading.active_count()
    slow = []
    try:
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: perfsentinel\r\nX-Slow: ")
            slow.append(sock)
        assert threading.active_count() <= threads_before + 1  # + the bcrypt thread at most; no thread per socket
        for _ in range(3):
            started = time.monotonic()
            scrape = requests.get(f"{base}/metrics", timeout=5, headers={"Connection": "close"})
            assert scrape.status_code == 200 and "perfsentinel_runs" in parsed(scrape.content)
            assert time.monotonic() - started < 2.0
        assert server.open_connections <= limits.max_connections
        time.sleep(limits.header_timeout + 0.5)
        for sock in slow:
            sock.settimeout(0.5)
        assert all(closed_by_server(sock) for sock in slow)
        assert wait_until(lambda: server.open_connections == 0, 2.0)
    finally:
        for sock in slow:
            sock.close()


def test_kept_alive_connections_serve_several_requests_then_close_when_idle(served):
    server = served(Limits(idle_timeout=1.0))
    with requests.Session() as session:
        for path in ("/healthz", "/readyz", "/metrics", "/healthz"):
            assert session.get(f"http://127.0.0.1:{server.port}{path}", timeout=5).status_code in (200, 503)
        assert server.open_connections == 1  # one connection for the four requests
        time.sleep(1.0)
        assert wait_until(lambda: server.open_connections == 0, 1.0)


def test_malformed_requests_get_an_answer_not_a_crash(served):
    server = served()
    assert raw_exchange(server.port, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(server.port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        ).startswith(b"HTTP/1.1 405 ")  # fmt: skip
    head = raw_exchange(server.port, b"HEAD /healthz HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")  # no body for HEAD
    pipelined = raw_exchange(
        server.port, b"GET /healthz HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\nConnection: close\r\n\r\n"
    )
    assert pipelined.count(b"HTTP/1.1 200 ") == 1 and pipelined.count(b"HTTP/1.1 404 ") == 1
    assert raw_exchange(server.port, b"GET /" + b"x" * 70000 + b" HTTP/1.1\r\n\r\n") == b""  # head too large: closed
    assert requests.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
