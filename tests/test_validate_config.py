"""``perfsentinel validate-config``: every problem of a file in one run, fast (no scientific imports), and
``--check-queries`` against a real Prometheus."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from analyzer.config import ConfigError, ConfigErrors, build_config
from analyzer.prometheus.localprom import LocalPrometheus, free_port
from tests.conftest import require_tools

BAD = """
prometheus:
  url: ftp://x
  tiemout: 5s
schedule: {score_every: 0s}
defaults: {band_sigmas: -1, stepp: 5m}
targets:
  - {name: a, query: up, direction: down}
  - {name: "1bad", query: up, step: five, min_history: 40d}
  - {name: a, query: up}
  - {query: up}
"""
BAD_PATHS = [
    "prometheus.tiemout", "prometheus.url", "defaults.stepp", "defaults.band_sigmas", "targets[0].direction",
    "targets[1].step", "targets[1].name", "targets[1].min_history", "targets[2].name", "targets[3].name",
    "schedule.score_every",
]  # fmt: skip
HEAVY = ("scipy", "pandas", "statsmodels", "prophet", "analyzer.models", "analyzer.detection")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analyzer", *args], capture_output=True, text=True, timeout=120)


def test_every_problem_of_a_file_is_reported_in_one_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as caught:
        build_config(yaml.safe_load(BAD), {})
    assert [error.path for error in caught.value.errors] == BAD_PATHS
    assert caught.value.path == "prometheus.tiemout"  # code that expects one ConfigError sees the first
    assert str(caught.value).splitlines() == [str(error) for error in caught.value.errors]
    # each message is the one a single problem gets
    assert "targets[0].direction: must be one of lower_is_better, higher_is_better, both; got 'down'" in str(
        caught.value
    )
    copy = pickle.loads(pickle.dumps(caught.value))
    assert [e.path for e in copy.errors] == BAD_PATHS

    path = tmp_path / "bad.yml"
    path.write_text(BAD)
    done = run_cli("validate-config", str(path))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert [line.split(": ")[2] for line in lines] == BAD_PATHS
    assert all(line.startswith("perfsentinel: config error: ") for line in lines)


def test_a_bad_default_is_reported_once_not_again_for_every_target() -> None:
    text = (
        "prometheus: {url: 'http://p'}\ndefaults: {step: soon}\ntargets: [{name: a, query: up}, {name: b, query: up}]"
    )
    with pytest.raises(ConfigError) as caught:
        build_config(yaml.safe_load(text), {})
    assert not isinstance(caught.value, ConfigErrors)
    assert caught.value.path == "defaults.step"


def test_an_unset_variable_is_reported_for_itself_only() -> None:
    text = "prometheus: {url: '${PROM_URL}'}\ntargets: [{name: a, query: up, step: '${STEP}'}]"
    with pytest.raises(ConfigErrors) as caught:
        build_config(yaml.safe_load(text), {})
    assert [(e.path, "is not set" in e.problem) for e in caught.value.errors] == [
        ("prometheus.url", True), ("targets[0].step", True)]  # fmt: skip


def test_validate_config_imports_no_scientific_package(tmp_path: Path) -> None:
    """What made it take 4-8 s: scipy, pandas, statsmodels and Prophet. Measured on 2 busy cores: 0.7 s wall,
    of which 0.33 s is Python's own start."""
    path = tmp_path / "ok.yml"
    path.write_text("prometheus: {url: 'http://127.0.0.1:9'}\ntargets: [{name: a, query: up}]\n")
    code = (
        "import sys, json\nfrom analyzer.commands.cli import main\n"
        f"code = main(['validate-config', {str(path)!r}])\n"
        "print(json.dumps([code, sorted(m for m in sys.modules if m.startswith(" + repr(HEAVY) + "))]))"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    code_and_modules = json.loads(done.stdout.splitlines()[-1])
    assert code_and_modules == [0, []], done.stdout + done.stderr
    print(f"validate-config in-process: {elapsed:.2f} s")


def test_help_lists_every_command() -> None:
    done = run_cli("--help")
    listed = {line.split()[0] for line in done.stdout.split("positional arguments:")[1].splitlines()[2:] if
              line.startswith("    ") and not line.startswith("      ")}  # fmt: skip
    assert {"run", "once", "check", "backtest", "baseline", "validate-config", "demo"} <= listed
    assert "--log-format" in done.stdout and "Exit codes" in done.stdout


# ---------------------------------------------------------------- --check-queries against Prometheus
@pytest.fixture(scope="module")
def self_scraping_prometheus(tmp_path_factory: pytest.TempPathFactory):
    """A Prometheus that scrapes itself every second, so ``up`` and ``prometheus_build_info`` exist now."""
    require_tools("prometheus")
    prometheus = LocalPrometheus(tmp_path_factory.mktemp("prometheus"))
    prometheus.config_text = (
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: self\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{prometheus.port}']\n"
    )
    prometheus.start()
    try:
        deadline = time.monotonic() + 30
        while not requests.get(f"{prometheus.url}/api/v1/query", params={"query": "up"}, timeout=5).json()["data"][
            "result"
        ]:
            assert time.monotonic() < deadline, "Prometheus did not scrape itself"
            time.sleep(0.3)
        yield prometheus
    finally:
        prometheus.stop()


def config_file(tmp_path: Path, url: str, targets: list[dict]) -> Path:
    path = tmp_path / "perfsentinel.yml"
    path.write_text(yaml.safe_dump({"prometheus": {"url": url}, "targets": targets}))
    return path


def test_check_queries_prints_how_many_series_each_query_returns(self_scraping_prometheus, tmp_path: Path) -> None:
    targets = [
        {"name": "up", "query": "up", "events_query": "prometheus_build_info"},
        {"name": "samples", "query": 'count by (job, instance) ({job="self"})'},
        {"name": "typo", "query": "prometheus_http_requests_totl"},
        {"name": "few", "query": '{job="self", __name__=~"prometheus_http_request.*"}', "max_series": 2},
    ]
    done = run_cli("validate-config", "--check-queries", str(config_file(tmp_path, self_scraping_prometheus.url,
                                                                           targets)))  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0].endswith(": ok (4 target(s))")
    assert lines[1:4] == [
        "targets[0].query (target up): 1 series",
        "targets[0].events_query (target up): 1 series",
        "targets[1].query (target samples): 1 series",
    ]
    assert lines[4].startswith("targets[2].query (target typo): 0 series now (a typo")
    assert lines[5].startswith("targets[3].query (target few): ") and "more than max_series (2)" in lines[5]
    assert done.returncode == 2  # the target with too many series would fail: the config must change


def test_check_queries_names_a_rejected_query_and_an_unreachable_prometheus(self_scraping_prometheus,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    targets = [{"name": "ok", "query": "up"}, {"name": "broken", "query": "sum(rate(up[5m])"}]
    bad = config_file(tmp_path, self_scraping_prometheus.url, targets)
    done = run_cli("validate-config", "--check-queries", str(bad))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "targets[0].query (target ok): 1 series" in done.stdout
    rejected = next(line for line in done.stdout.splitlines() if line.startswith("targets[1].query"))
    assert "rejected by Prometheus" in rejected and "parse error" in rejected

    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = run_cli("validate-config", "--check-queries", "--prometheus-url", closed, str(bad))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("could not be evaluated") == 2
    assert time.monotonic() - started < 20  # one attempt per query, no retries with backoff
