"""perfsentinel check --builds: the CI gate over a benchmark history in a CSV file (no Prometheus).

Histories are generated with known change points; the command runs through the real CLI, and the printed accept
command is run as printed.
"""

from __future__ import annotations

import json
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from analyzer.commands.cli import main
from tests.test_reports import junit_schema  # noqa: F401  (the fixture)

START = 1_767_571_200


def _history(tmp_path: Path, columns: dict[str, np.ndarray], samples: int = 1, name: str = "builds.csv") -> Path:
    """One row per build and sample: build 1000, 1001, ..., a timestamp an hour apart, the metrics' values."""
    n = len(next(iter(columns.values())))
    lines = ["build,timestamp," + ",".join(columns)]
    for i in range(n):
        for _ in range(samples):
            values = ",".join(f"{columns[c][i]:.4f}" if np.isfinite(columns[c][i]) else "" for c in columns)
            lines.append(f"{1000 + i},{START + 3600 * i},{values}")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _noise(seed: int, n: int, level: float, sigma: float) -> np.ndarray:
    return level * (1 + sigma * np.random.default_rng(seed).standard_normal(n))


def _check(*args: str) -> int:
    return main(["check", *args])


def _report(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text())


def _by_metric(directory: Path) -> dict[str, dict]:
    return {item["target"]: item for item in _report(directory)["series"]}


@pytest.fixture
def regressed(tmp_path: Path) -> Path:
    """latency_ms +20% from build 1080 (of 120); throughput_rps 10% lower over builds 1040-1059, then fixed."""
    latency = _noise(1, 120, 100.0, 0.03)
    latency[80:] *= 1.2
    throughput = _noise(2, 120, 5000.0, 0.02)
    throughput[40:60] *= 0.9
    return _history(tmp_path, {"latency_ms": latency, "throughput_rps": throughput})


DIRECTIONS = ["--direction", "latency_ms=lower_is_better", "--direction", "throughput_rps=higher_is_better"]


def test_a_regression_fails_the_latest_build_and_names_the_first_build_at_the_new_level(regressed, tmp_path):
    assert _check("--builds", str(regressed), *DIRECTIONS, "--report", str(tmp_path / "r")) == 1
    items = _by_metric(tmp_path / "r")
    latency, throughput = items["latency_ms"], items["throughput_rps"]
    assert latency["verdict"] == "fail" and latency["severity"] == "significant"
    assert latency["change_build"] == "1080" and latency["change_start"] == "2026-01-08T08:00:00Z"
    assert 17 < latency["statistics"]["change_pct"] < 23
    assert [c["build"] for c in latency["change_points"]] == ["1080"]
    assert latency["likely_cause"]["source"] == "builds" and "1079" in latency["likely_cause"]["description"]
    # the fixed dip is history: listed with its direction and p-value, the latest build passes
    assert throughput["verdict"] == "pass" and throughput["change_build"] is None
    assert [(c["build"], c["direction"]) for c in throughput["change_points"]] == [
        ("1040", "worse"),
        ("1060", "better"),
    ]
    assert all(c["p_value"] < 1e-6 and abs(c["change_pct"]) > 8 for c in throughput["change_points"])
    assert throughput["change_points"][0]["change_pct"] > 0  # a drop of throughput is worse: positive


def test_the_printed_accept_command_runs_and_passes(regressed, tmp_path, monkeypatch):
    assert _check("--builds", str(regressed), *DIRECTIONS, "--fail-on", "minor", "--report", str(tmp_path / "r")) == 1
    accept = next(
        r for r in _by_metric(tmp_path / "r")["latency_ms"]["recommendations"] if r["action"] == "accept_baseline"
    )
    assert accept["command"] in accept["text"]
    argv = shlex.split(accept["command"])
    assert argv[:2] == ["perfsentinel", "check"] and "--fail-on" in argv and "--since" in argv
    assert main(argv[1:] + ["--report", str(tmp_path / "accepted")]) == 0
    assert _report(tmp_path / "accepted")["settings"]["since"] == "1080"


def test_repeated_rows_are_samples_of_one_build(tmp_path):
    """Three samples per build, one of them wild: the median per build keeps the level."""
    latency = _noise(3, 60, 50.0, 0.02)
    latency[45:] *= 1.1
    path = _history(tmp_path, {"latency_ms": latency}, samples=3)
    text = path.read_text().splitlines()
    text[10] = text[10].rsplit(",", 1)[0] + ",5000"  # one sample of build 1003 is 100 times the others
    path.write_text("\n".join(text) + "\n")
    assert _check("--builds", str(path), "--direction", "lower_is_better", "--report", str(tmp_path / "r")) == 0
    item = _by_metric(tmp_path / "r")["latency_ms"]
    assert item["verdict"] == "warn" and item["change_build"] == "1045"  # +10% is minor: below the gate
    assert [c["build"] for c in item["change_points"]] == ["1045"]
    assert _check("--builds", str(path), "--direction", "lower_is_better", "--fail-on", "minor") == 1


def test_direction_comes_from_the_flag_then_the_config_target_then_both(tmp_path):
    """Throughput 20% higher from build 1050: an improvement for its config target, a change for 'both'."""
    throughput = _noise(4, 80, 1000.0, 0.02)
    throughput[50:] *= 1.2
    path = _history(tmp_path, {"throughput": throughput})
    config = tmp_path / "perfsentinel.yaml"
    targets = [{"name": "throughput", "query": "x", "kind": "throughput"}]
    config.write_text(yaml.safe_dump({"prometheus": {"url": "http://127.0.0.1:9"}, "targets": targets}))
    assert _check("--builds", str(path), "--config", str(config), "--report", str(tmp_path / "c")) == 0
    assert _report(tmp_path / "c")["settings"]["directions"] == {"throughput": "higher_is_better"}
    assert _check("--builds", str(path), "--report", str(tmp_path / "b")) == 1  # both: any change fails
    assert _by_metric(tmp_path / "b")["throughput"]["baseline_source"].endswith("give --direction))")
    assert _check("--builds", str(path), "--config", str(config), "--direction", "throughput=lower_is_better") == 1


def test_creeping_steps_fail_once_they_add_up(tmp_path):
    """Three steps of 6% (each minor) are one 19% regression that started at the first of them."""
    latency = _noise(5, 150, 20.0, 0.01)
    for start in (60, 90, 120):
        latency[start:] *= 1.06
    path = _history(tmp_path, {"latency_ms": latency})
    assert _check("--builds", str(path), "--direction", "lower_is_better", "--report", str(tmp_path / "r")) == 1
    item = _by_metric(tmp_path / "r")["latency_ms"]
    assert item["change_build"] == "1060" and item["severity"] == "significant"
    assert "built up in 3 steps: 1060 (+6" in item["recommendations"][0]["text"]


def test_a_jump_at_the_latest_build_fails_at_once_unless_more_builds_are_asked_for(tmp_path):
    latency = _noise(6, 100, 10.0, 0.02)
    latency[-1] *= 1.4
    path = _history(tmp_path, {"latency_ms": latency})
    args = ["--builds", str(path), "--direction", "lower_is_better"]
    assert _check(*args, "--report", str(tmp_path / "r")) == 1
    assert _by_metric(tmp_path / "r")["latency_ms"]["change_build"] == "1099"
    assert _check(*args, "--min-builds", "3") == 0


def test_too_few_builds_are_undecided(tmp_path):
    path = _history(tmp_path, {"latency_ms": np.array([1.0, 1.1, 0.9]), "empty": np.full(3, np.nan)})
    assert _check("--builds", str(path), "--report", str(tmp_path / "r")) == 3
    assert {i["verdict"] for i in _report(tmp_path / "r")["series"]} == {"undecided"}
    assert "need 4" in _by_metric(tmp_path / "r")["empty"]["reason"]
    assert _check("--builds", str(path), "--undecided", "pass") == 0


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "cannot read"),
        ("commit,latency\na,1\n", [], "no 'build' column"),
        ("build,latency\n1,1\n2,slow\n", [], "line 3, column latency: 'slow' is not a number"),
        ("build,latency\n1,1\n2\n", [], "line 3: 1 fields"),
        ("build,timestamp,latency\n1,yesterday,1\n", [], "timestamp 'yesterday'"),
        ("build\n1\n", [], "no metric columns"),
        ("build,latency\n1,1\n2,2\n", ["--since", "7"], "build '7' is not in"),
        ("build,latency\n1,1\n2,2\n", ["--target", "memory"], "no column memory"),
        ("build,latency\n1,1\n2,2\n", ["--baseline", "now-7d:now-1h"], "not with --builds"),
        ("build,latency\n1,1\n2,2\n", ["--direction", "down"], "expected [METRIC=]"),
    ],
)
def test_unusable_input_is_a_usage_error_that_says_why(tmp_path, capsys, content, args, message):
    path = tmp_path / "builds.csv"
    if content is not None:
        path.write_text(content)
    assert _check("--builds", str(path), *args) == 2
    assert message in capsys.readouterr().err


def test_a_prometheus_check_still_needs_a_config(capsys):
    assert _check("--baseline", "now-7d:now-1h") == 2
    assert "--config" in capsys.readouterr().err


def test_builds_reports_junit_markdown_and_html(regressed, tmp_path, junit_schema):  # noqa: F811
    from lxml import etree

    assert _check("--builds", str(regressed), *DIRECTIONS, "--report", str(tmp_path / "r")) == 1
    junit = (tmp_path / "r" / "junit.xml").read_text()
    junit_schema.assertValid(etree.fromstring(junit.encode()))
    cases = {c.get("name"): c for c in ET.fromstring(junit).iter("testcase")}
    assert set(cases) == {"latency_ms", "throughput_rps"} and cases["latency_ms"].find("failure") is not None
    assert "change build: 1080" in cases["latency_ms"].find("failure").text
    markdown = (tmp_path / "r" / "summary.md").read_text()
    assert "| verdict | metric | change build |" in markdown and "| `1080` |" in markdown
    assert "positive means worse" in markdown
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 1 and "Build plots" in html and "Change build" in html


def test_a_budget_from_the_config_fails_the_latest_build_without_a_change(tmp_path):
    throughput = _noise(7, 60, 4900.0, 0.01)
    path = _history(tmp_path, {"throughput_rps": throughput})
    config = tmp_path / "perfsentinel.yaml"
    budget = {"budget": {"statistic": "min", "min": 5000}}
    targets = [{"name": "throughput_rps", "query": "x", "kind": "throughput", "check": budget}]
    config.write_text(yaml.safe_dump({"prometheus": {"url": "http://127.0.0.1:9"}, "targets": targets}))
    assert _check("--builds", str(path), "--config", str(config), "--report", str(tmp_path / "r")) == 1
    item = _by_metric(tmp_path / "r")["throughput_rps"]
    assert item["severity"] == "none" and item["reason"].startswith("budget breached") and not item["budget"]["passed"]
    assert [r["action"] for r in item["recommendations"]] == ["adjust_budget"]
