"""The shipped Prometheus rules: promtool syntax and unit tests, and the conventions every alert must follow
(severity, annotations, runbooks, production ``for:`` durations, tests that fire and resolve each alert)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from analyzer.durations import parse_duration
from tests.conftest import REPO, require_tools
from tests.dashboard_queries import CONTRACT_METRICS, exported_metric_names, metric_names, recording_rules

RULES = REPO / "rules"
RULE_FILES = sorted(RULES.glob("perfsentinel-*.yml"))
UNIT_TESTS = sorted((RULES / "tests").glob("*.yml"))
RUNBOOK_URL = "https://github.com/perfsentinel/perfsentinel/blob/main/docs/runbooks/{}.md"
SEVERITIES = {"critical", "warning", "info", "none"}
PER_SERIES_PREFIXES = ("PerfSentinelAnomaly", "PerfSentinelRegression", "PerfSentinelDrift")


def alerts() -> dict[str, dict]:
    found = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in found, f"duplicate alert {rule['alert']}"
                    found[rule["alert"]] = rule
    return found


def unit_test_expectations() -> dict[str, list[tuple[int, float, bool]]]:
    """alertname -> [(test index, eval time s, fires)] over every promtool unit test file."""
    seen: dict[str, list[tuple[int, float, bool]]] = {}
    for number, path in enumerate(UNIT_TESTS):
        for index, test in enumerate(yaml.safe_load(path.read_text())["tests"]):
            for check in test.get("alert_rule_test", []):
                when = parse_duration(check["eval_time"]) if check["eval_time"] not in ("0", "0m") else 0.0
                seen.setdefault(check["alertname"], []).append((number * 1000 + index, when,
                                                                bool(check.get("exp_alerts"))))  # fmt: skip
    return seen


def promtool(*args: str) -> subprocess.CompletedProcess:
    require_tools("promtool")
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=RULES)


def test_rule_files_pass_promtool_check() -> None:
    done = promtool("check", "rules", *[p.name for p in RULE_FILES])
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_pass() -> None:
    assert len(UNIT_TESTS) >= 4
    done = promtool("test", "rules", *[str(p.relative_to(RULES)) for p in UNIT_TESTS])
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """A wrong expectation must make promtool fail, or the suite above proves nothing."""
    broken = yaml.safe_load((RULES / "tests" / "regressions_test.yml").read_text())
    broken["rule_files"] = [str(RULES / "perfsentinel-regressions.yml")]
    broken["tests"][0]["alert_rule_test"][0]["eval_time"] = "40m"  # the warning fires by then
    path = tmp_path / "broken_test.yml"
    path.write_text(yaml.safe_dump(broken))
    assert promtool("test", "rules", str(path)).returncode != 0


@pytest.mark.parametrize("name", sorted(alerts()))
def test_alert_conventions(name: str) -> None:
    rule = alerts()[name]
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= annotations.keys()
    assert annotations["runbook_url"] == RUNBOOK_URL.format(name)
    runbook = REPO / "docs" / "runbooks" / f"{name}.md"
    assert runbook.is_file(), f"missing runbook {runbook}"
    assert runbook.read_text().startswith(f"# {name}\n")
    if name != "PerfSentinelHeartbeat":
        assert parse_duration(rule["for"]) >= 300, "shipped rules need production for: durations (>= 5m)"
    if name.startswith(PER_SERIES_PREFIXES):
        assert "$labels.target" in annotations["description"] and "$series" in annotations["description"]
    if name.startswith("PerfSentinelRegression"):
        assert "humanizePercentage" in annotations["description"] and "p-value" in annotations["description"]


def test_regression_tiers_map_to_severities_and_escalation_is_30m() -> None:
    rules = alerts()
    tiers = {name: (rule["labels"]["severity"], rule["labels"]["tier"]) for name, rule in rules.items()
             if name.startswith("PerfSentinelRegression")}  # fmt: skip
    assert tiers == {
        "PerfSentinelRegressionMinor": ("info", "minor"),
        "PerfSentinelRegressionSignificant": ("warning", "significant"),
        "PerfSentinelRegressionCritical": ("critical", "critical"),
        "PerfSentinelRegressionEscalated": ("critical", "significant"),
    }
    escalated = rules["PerfSentinelRegressionEscalated"]
    assert escalated["expr"] == rules["PerfSentinelRegressionSignificant"]["expr"]
    assert parse_duration(escalated["for"]) == 1800
    assert escalated["labels"]["escalated"] == "true"
    assert all(rule["labels"]["severity"] != "critical" for name, rule in rules.items() if "Anomaly" in name)


@pytest.mark.parametrize("name", sorted(alerts()))
def test_every_alert_has_unit_tests_that_fire_and_stay_quiet(name: str) -> None:
    checks = unit_test_expectations().get(name, [])
    assert any(fires for _, _, fires in checks), f"no promtool test where {name} fires"
    if name != "PerfSentinelHeartbeat":
        assert any(not fires for _, _, fires in checks), f"no promtool test where {name} is quiet"


@pytest.mark.parametrize("name", [n for n in sorted(alerts()) if n.startswith(PER_SERIES_PREFIXES)])
def test_per_series_alerts_are_tested_to_resolve(name: str) -> None:
    """Within one unit test, an evaluation after the alert fired expects it gone: the series recovered."""
    checks = unit_test_expectations()[name]
    resolved = [
        (test, when) for test, when, fires in checks
        if not fires and any(t == test and w < when and f for t, w, f in checks)
    ]  # fmt: skip
    assert resolved, f"no promtool test where {name} resolves after firing"


def test_rules_only_read_metrics_of_the_contract() -> None:
    known = exported_metric_names() | CONTRACT_METRICS | set(recording_rules()) | {"up"}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                unknown = metric_names(rule["expr"]) - known
                assert not unknown, f"{path.name} {rule.get('alert') or rule.get('record')}: {unknown}"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for record in recording_rules():
        assert re.fullmatch(r"perfsentinel:[a-z_]+:[a-z0-9_]+", record), record
