"""Credentials: never printed (logs, errors, `once` output, reports, /metrics), token and password files checked at
load and re-read when they change. The HTTP tests use a real server on 127.0.0.1 that records the Authorization
header of every request; the end-to-end ones run the real CLI and service."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests

from analyzer.config import ConfigError, PrometheusConfig, build_config, load_config
from analyzer.prometheus.credentials import redact, redact_logs, redact_url
from analyzer.prometheus.localprom import BackfillSeries, free_port, wait_http
from analyzer.prometheus.reader import PrometheusReader
from analyzer.synthetic import generate
from tests.procs import killed_if_left, stop_cleanly

PASSWORD = "s3cr3t-Pa55"
TOKEN = "tok-9f8e7d6c5b4a"


# ---------------------------------------------------------------- redaction
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://alice:s3cret@prom:9090", "http://alice:***@prom:9090"),
        ("https://alice:p%40ss@prom.example/prefix", "https://alice:***@prom.example/prefix"),
        ("http://alice:p@ss@prom:9090/x", "http://alice:***@prom:9090/x"),  # "@" in the password, as urlsplit reads it
        ("http://:onlypass@prom", "http://:***@prom"),
        ("http://alice@prom:9090", "http://alice@prom:9090"),  # no password: nothing to hide
        ("http://prom:9090/api/v1/query", "http://prom:9090/api/v1/query"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_inside_longer_text_keeps_the_rest() -> None:
    text = "GET http://alice:s3cret@prom:9090/api failed; admin@example.com was told, see http://prom:9090/graph"
    assert redact_url(text) == (
        "GET http://alice:***@prom:9090/api failed; admin@example.com was told, see http://prom:9090/graph"
    )


def test_redact_removes_the_configured_secrets_and_echoed_headers(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = PrometheusConfig(url="http://alice:p%40ss@prom:9090", bearer_token_file=str(token_file))
    text = f"proxy said: token {TOKEN} and p@ss and p%40ss; headers {{'Authorization': 'Basic YWxpY2U6cEBzcw=='}}"
    cleaned = redact(text, config)
    assert TOKEN not in cleaned and "p@ss" not in cleaned and "p%40ss" not in cleaned
    assert "YWxpY2U6cEBzcw" not in cleaned and "'Authorization': 'Basic ***'" in cleaned
    basic = PrometheusConfig(url="http://prom", basic_auth=build_config(
        {"prometheus": {"url": "http://prom", "basic_auth": {"username": "u", "password": PASSWORD}},
         "targets": [{"name": "t", "query": "up"}]}, env={}).prometheus.basic_auth)  # fmt: skip
    assert redact(f"x {PASSWORD} y", basic) == "x *** y"


def test_log_lines_and_tracebacks_are_redacted() -> None:
    config = PrometheusConfig(url=f"http://alice:{PASSWORD}@prom:9090")
    handler = logging.StreamHandler(stream := _Sink())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    formatters = [(h, h.formatter) for h in root.handlers]  # pytest's own: put back as they were
    root.addHandler(handler)
    try:
        redact_logs(config)
        try:
            raise RuntimeError(f"cannot reach {config.url}")
        except RuntimeError:
            logging.getLogger("some.library").exception("while talking to %s", config.url)
    finally:
        root.removeHandler(handler)
        for other, formatter in formatters:
            other.setFormatter(formatter)
    assert PASSWORD not in stream.text and "http://alice:***@prom:9090" in stream.text
    assert "Traceback" in stream.text  # the traceback is still there, without the password


class _Sink:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


# ---------------------------------------------------------------- config checks
def write_config(path: Path, prometheus: str, targets: str = "  - name: t\n    query: up\n") -> Path:
    path.write_text(f"prometheus:\n{prometheus}targets:\n{targets}")
    return path


@pytest.mark.parametrize(
    ("prometheus", "key", "problem"),
    [
        ("  url: http://p\n  bearer_token_file: {missing}\n", "prometheus.bearer_token_file", "No such file"),
        ("  url: http://p\n  bearer_token_file: {empty}\n", "prometheus.bearer_token_file", "empty"),
        ("  url: http://p\n  bearer_token_file: {folder}\n", "prometheus.bearer_token_file", "Is a directory"),
        (
            "  url: http://p\n  basic_auth: {{username: u, password_file: {missing}}}\n",
            "prometheus.basic_auth.password_file",
            "No such file",
        ),  # fmt: skip
    ],
)
def test_an_unusable_credential_file_is_a_config_error_naming_the_key(
    tmp_path: Path, prometheus: str, key: str, problem: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "folder").mkdir()
    paths = {name: tmp_path / name for name in ("missing", "empty", "folder")}
    config = write_config(tmp_path / "c.yml", prometheus.format(**paths))
    with pytest.raises(ConfigError) as error:
        load_config(str(config))
    assert error.value.path == key and problem in error.value.problem


def test_two_ways_to_authenticate_are_a_config_error(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    raw = {"prometheus": {"url": "http://p", "bearer_token_file": str(token), "basic_auth": {"username": "u"}},
           "targets": [{"name": "t", "query": "up"}]}  # fmt: skip
    with pytest.raises(ConfigError, match="give only one of"):
        build_config(raw, env={})
    raw["prometheus"] = {"url": "http://p", "basic_auth": {"username": "u", "password": "x", "password_file": "f"}}
    with pytest.raises(ConfigError, match="password or password_file"):
        build_config(raw, env={})


def test_a_bad_url_with_a_password_is_not_echoed_in_the_config_error() -> None:
    raw = {"prometheus": {"url": f"htp://alice:{PASSWORD}@prom"}, "targets": [{"name": "t", "query": "up"}]}
    with pytest.raises(ConfigError) as error:
        build_config(raw, env={})
    assert PASSWORD not in str(error.value) and "alice:***@prom" in str(error.value)


@pytest.mark.parametrize("command", ["validate-config", "once", "check", "run"])
def test_every_command_exits_2_naming_the_missing_token_file(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path / "c.yml", f"  url: http://127.0.0.1:1\n  bearer_token_file: {tmp_path}/nope\n")
    args = [str(config)] if command == "validate-config" else ["--config", str(config)]
    done = subprocess.run([sys.executable, "-m", "analyzer", command, *args], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "prometheus.bearer_token_file" in done.stderr and "No such file" in done.stderr
    assert "Traceback" not in done.stderr


# ---------------------------------------------------------------- the Authorization header, per request
class RecordingPrometheus:
    """A real HTTP server on 127.0.0.1 that answers every query with an empty result and records the
    Authorization header of each request."""

    def __init__(self) -> None:
        self.headers: list[str | None] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                recorder.headers.append(self.headers.get("Authorization"))
                kind = "vector" if self.path.startswith("/api/v1/query?") else "matrix"
                body = json.dumps({"status": "success", "data": {"resultType": kind, "result": []}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording() -> Iterator[RecordingPrometheus]:
    server = RecordingPrometheus()
    yield server
    server.stop()


def reader_for(url: str, **prometheus: object) -> PrometheusReader:
    raw = {"prometheus": {"url": url, "retries": 0, **prometheus}, "targets": [{"name": "t", "query": "up"}]}
    return PrometheusReader(build_config(raw, env={}).prometheus)


def test_a_rotated_token_file_is_used_from_the_next_request(recording: RecordingPrometheus, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    reader = reader_for(recording.url, bearer_token_file=str(token))
    reader.query("up", time.time())
    token.write_text("other-token\n")  # same length, within the same mtime tick: still seen
    reader.query("up", time.time())
    replacement = tmp_path / "token.new"  # how a Kubernetes secret volume rotates: a new file renamed over it
    replacement.write_text("third-token-is-longer\n")
    os.replace(replacement, token)
    reader.query("up", time.time())
    assert recording.headers == ["Bearer first-token", "Bearer other-token", "Bearer third-token-is-longer"]


def test_a_token_file_that_disappears_keeps_the_last_good_value_and_warns_once(
    recording: RecordingPrometheus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    reader = reader_for(recording.url, bearer_token_file=str(token))
    token.unlink()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            reader.query("up", time.time())
    assert recording.headers == [f"Bearer {TOKEN}"] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "prometheus.bearer_token_file" in warnings[0] and "last good value" in warnings[0]
    assert TOKEN not in caplog.text
    token.write_text("new-token")  # back: used at once
    reader.query("up", time.time())
    assert recording.headers[-1] == "Bearer new-token"


def test_basic_auth_password_file_is_re_read(recording: RecordingPrometheus, tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("one")
    reader = reader_for(recording.url, basic_auth={"username": "reader", "password_file": str(password)})
    reader.query("up", time.time())
    password.write_text("two")
    reader.query("up", time.time())
    assert recording.headers == [basic("reader", "one"), basic("reader", "two")]


def test_url_userinfo_still_authenticates(recording: RecordingPrometheus) -> None:
    reader_for(recording.url.replace("http://", f"http://alice:{PASSWORD}@")).query("up", time.time())
    assert recording.headers == [basic("alice", PASSWORD)]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_once_sends_the_token_and_never_prints_it(recording: RecordingPrometheus, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    config = write_config(tmp_path / "c.yml", f"  url: {recording.url}\n  bearer_token_file: {token}\n")
    done = run_cli("--log-level", "DEBUG", "once", "--config", str(config), "--output", "json",
                   "--report", str(tmp_path / "report"))  # fmt: skip
    assert recording.headers and set(recording.headers) == {f"Bearer {TOKEN}"}
    assert_nowhere(TOKEN, done, tmp_path / "report")


# ---------------------------------------------------------------- the URL password, end to end
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True, timeout=300)


def assert_nowhere(secret: str, done: subprocess.CompletedProcess, report: Path | None = None) -> None:
    assert secret not in done.stdout, done.stdout
    assert secret not in done.stderr, done.stderr
    files = list(report.rglob("*")) if report else []
    for path in files:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


UNREACHABLE_CONFIG = """\
  url: http://alice:{password}@127.0.0.1:{port}
  retries: 1
  backoff: 0.1s
"""


@pytest.mark.parametrize("output", ["table", "json"])
def test_once_against_an_unreachable_prometheus_never_prints_the_url_password(tmp_path: Path, output: str) -> None:
    config = write_config(tmp_path / "c.yml", UNREACHABLE_CONFIG.format(password=PASSWORD, port=free_port()))
    done = run_cli("--log-level", "DEBUG", "once", "--config", str(config), "--output", output,
                   "--report", str(tmp_path / "report"))  # fmt: skip
    assert done.returncode == 1
    assert "alice:***@127.0.0.1" in done.stdout + done.stderr  # the error still says which Prometheus failed
    assert_nowhere(PASSWORD, done, tmp_path / "report")
    assert any((tmp_path / "report").iterdir())


def test_check_against_an_unreachable_prometheus_never_prints_the_url_password(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", UNREACHABLE_CONFIG.format(password=PASSWORD, port=free_port()))
    done = run_cli("check", "--config", str(config), "--baseline", "now-2h:now-1h", "--report", str(tmp_path / "r"))
    assert done.returncode == 3, done.stderr  # could not decide
    assert_nowhere(PASSWORD, done, tmp_path / "r")


@pytest.mark.integration
def test_once_and_check_against_a_real_prometheus_with_a_password_url(start_prometheus, tmp_path: Path) -> None:
    now = np.floor(time.time() / 300) * 300
    series = generate(days=3, seed=5, end=now)
    prometheus = start_prometheus([BackfillSeries("latency_seconds", {"service": "a"}, series.timestamps,
                                                  series.values)])  # fmt: skip
    url = prometheus.url.replace("http://", f"http://alice:{PASSWORD}@")
    targets = "  - name: latency\n    query: latency_seconds\n  - name: broken\n    query: 'sum(latency_seconds'\n"
    config = write_config(tmp_path / "c.yml", f"  url: {url}\n  retries: 0\n", targets)
    once = run_cli("once", "--config", str(config), "--output", "json", "--report", str(tmp_path / "once"))
    assert once.returncode == 1  # the broken target
    assert {r["target"] for r in json.loads(once.stdout)} == {"latency"} and "broken" in once.stderr
    assert_nowhere(PASSWORD, once, tmp_path / "once")
    check = run_cli("check", "--config", str(config), "--target", "latency", "--baseline", "now-2d:now-1d",
                    "--report", str(tmp_path / "check"))  # fmt: skip
    assert check.returncode in (0, 1, 3), check.stderr
    assert_nowhere(PASSWORD, check, tmp_path / "check")


def test_the_service_never_logs_or_exports_the_url_password(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yml", UNREACHABLE_CONFIG.format(password=PASSWORD, port=free_port()))
    port = free_port()
    log = tmp_path / "service.log"
    with open(log, "w") as output:
        service = subprocess.Popen([sys.executable, "-m", "analyzer", "run", "--config", str(config), "--listen",
                                    f"127.0.0.1:{port}"], stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    with killed_if_left(service):
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, service)
        deadline = time.monotonic() + 60
        while "connection_error" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        stop_cleanly(service)
    text = log.read_text()
    assert "alice:***@127.0.0.1" in text, text
    assert PASSWORD not in text and PASSWORD not in metrics
