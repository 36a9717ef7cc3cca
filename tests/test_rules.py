"""The shipped Prometheus rules: promtool syntax and unit tests, and the conventions every alert must follow
(severity, annotations, runbooks, production ``for:`` durations and their listed exceptions, calibrated
thresholds, rules that never repeat an earlier alert of the series, tests that fire and resolve each alert)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from analyzer.durations import parse_duration
from tests.conftest import REPO, require_tools
from tests.dashboard_queries import (
    CONTRACT_METRICS,
    DEFAULT_GRAFANA_URL,
    exported_metric_names,
    metric_names,
    recording_rules,
    runbook_url,
)

RULES = REPO / "rules"
RULE_FILES = sorted(RULES.glob("perfsentinel-*.yml"))
UNIT_TESTS = sorted((RULES / "tests").glob("*.yml"))
SEVERITIES = {"critical", "warning", "info", "none"}
PER_SERIES_PREFIXES = ("PerfSentinelAnomaly", "PerfSentinelNovelty", "PerfSentinelRegression")
PRODUCTION_FOR = 300  # seconds: a shipped alert holds its condition at least 5m before it notifies ...
# ... except these, by design (alert -> its exact `for:` in seconds, and why)
SHORT_FOR = {
    "PerfSentinelHeartbeat": (0, "always firing on purpose: a dead man's switch"),
    # persistence is counted in samples by the analyzer, so it means the same at every sampling step; a fixed
    # hold would be a different number of samples at every step (two samples, an hour, of an hourly series)
    "PerfSentinelAnomaly": (0, "the calibrated threshold makes a crossing rare; keep_firing_for makes one episode"),
    "PerfSentinelNovelty": (0, "as the anomaly alert; it sees the anomaly alert's ALERTS in its own group"),
}
# novelty, minor and significant alerts: quiet for 6h after an earlier alert of the same series; critical ones 3h
UNLESS = re.compile(
    r" unless ignoring\(alertname, alertstate, severity\) "
    r'max_over_time\(ALERTS\{alertname(=|=~)"([A-Za-z|]+)", alertstate="firing"\}\[(\w+)\]\)$'
)
SEVERITY_RANK = {"none": 0, "info": 1, "warning": 2, "critical": 3}


def alerts() -> dict[str, dict]:
    found = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["alert"] not in found, f"duplicate alert {rule['alert']}"
                    found[rule["alert"]] = rule
    return found


def normalized(expr: str) -> str:
    """An expression with every run of whitespace as one space."""
    return " ".join(expr.split())


def rule_groups() -> dict[str, list[str]]:
    """group name -> its alert names, in evaluation order."""
    return {group["name"]: [rule["alert"] for rule in group["rules"] if "alert" in rule]
            for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]}  # fmt: skip


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
    # the alert's panel of the runbooks dashboard (grafana/dashboards/perfsentinel-runbooks.json)
    assert annotations["runbook_url"] == runbook_url(name), f"{name}: runbook_url should be {runbook_url(name)}"
    runbook = REPO / "docs" / "runbooks" / f"{name}.md"
    assert runbook.is_file(), f"missing runbook {runbook}"
    assert runbook.read_text().startswith(f"# {name}\n")
    assert for_problem(name, rule) is None, for_problem(name, rule)
    if name.startswith(PER_SERIES_PREFIXES):
        assert "$labels.target" in annotations["description"] and "$series" in annotations["description"]
        # the Series dashboard with the series chosen by its series_id (rules/tests check the rendered URL)
        dashboard = annotations["dashboard_url"]
        assert f"{DEFAULT_GRAFANA_URL}/d/perfsentinel-series?var-target=" in dashboard
        assert "perfsentinel_series_info" in dashboard and "&var-series=" in dashboard
    if name.startswith("PerfSentinelRegression"):
        assert "humanizePercentage" in annotations["description"] and "p-value" in annotations["description"]
    if name == "PerfSentinelAnomaly":  # the series' own threshold beside its score
        assert "perfsentinel_anomaly_threshold" in annotations["description"]


def for_problem(name: str, rule: dict) -> str | None:
    """What is wrong with an alert's ``for:``: below 5m without being a listed exception, or not the exact
    value its exception lists."""
    hold = parse_duration(rule.get("for", "0s"))
    if name in SHORT_FOR:
        listed = SHORT_FOR[name][0]
        return None if hold == listed else f"{name}: for: {rule.get('for')}, but SHORT_FOR lists {listed:g}s"
    return None if hold >= PRODUCTION_FOR else f"{name}: shipped rules need production for: durations (>= 5m)"


def test_short_for_exceptions_are_shipped_alerts_that_need_them() -> None:
    """The exception list cannot go stale: each entry is a shipped alert whose ``for:`` is below 5m (the exact
    value is pinned by test_alert_conventions), each with a reason."""
    shipped = alerts()
    for name, (hold, reason) in SHORT_FOR.items():
        assert name in shipped, f"{name} is listed in SHORT_FOR but not shipped"
        assert hold < PRODUCTION_FOR and reason, name
    short = {name for name, rule in shipped.items() if parse_duration(rule.get("for", "0s")) < PRODUCTION_FOR}
    assert short == set(SHORT_FOR)


def test_for_convention_can_fail() -> None:
    """A short ``for:`` outside the list, or a listed alert with another ``for:``, is reported."""
    assert for_problem("PerfSentinelRegressionCritical", {"for": "1m"}) is not None
    assert for_problem("PerfSentinelAnomaly", {"for": "5m"}) is not None
    assert for_problem("PerfSentinelNovelty", {"for": "1m"}) is not None
    assert for_problem("PerfSentinelNovelty", {}) is None


@pytest.mark.parametrize("name", [n for n in sorted(alerts()) if n.startswith(PER_SERIES_PREFIXES)])
def test_per_series_alerts_compare_with_the_calibrated_threshold(name: str) -> None:
    """Each per-series alert needs its statistic above the series' calibrated threshold
    (analyzer/detection/budget.py): a
    series without a threshold series never fires. The alert's value stays the statistic (the left operand)."""
    comparison = {
        "PerfSentinelAnomaly": "perfsentinel_anomaly_score > perfsentinel_anomaly_threshold",
        "PerfSentinelNovelty": "perfsentinel_novelty_score > perfsentinel_novelty_threshold",
    }.get(name, "perfsentinel_regression_change_ratio > perfsentinel_regression_threshold_ratio")
    expr = normalized(alerts()[name]["expr"])
    assert expr == comparison or expr.startswith((comparison + " and ", comparison + " unless ")), expr


def unless_problems(name: str, shipped: dict[str, dict], groups: dict[str, list[str]]) -> list[str]:
    """What breaks the convention that rules never subtract (see the test below) for one alert."""
    rule = shipped[name]
    expr = normalized(rule["expr"])
    severity = rule["labels"]["severity"]
    if name == "PerfSentinelAnomaly":
        return [] if " unless " not in expr else [f"{name} always notifies: no `unless`"]
    expected_window = "3h" if severity == "critical" else "6h"
    match = UNLESS.search(expr)
    if not match:
        return [f"{name}: no `unless ... ALERTS[{expected_window}]` clause: {expr}"]
    operator, names, window = match.groups()
    problems = [] if operator == ("=~" if "|" in names else "=") else [f"{name}: matcher {operator} for {names}"]
    problems += [] if window == expected_window else [f"{name}: window {window}, not {expected_window}"]
    group = next(members for members in groups.values() if name in members)
    for earlier in names.split("|"):
        if earlier not in shipped or earlier == name:
            problems.append(f"{name}: unless names {earlier}")
        elif SEVERITY_RANK[shipped[earlier]["labels"]["severity"]] > SEVERITY_RANK[severity]:
            problems.append(f"{name}: {earlier} has a higher severity (inhibition handles that)")
        elif earlier in group and group.index(earlier) > group.index(name):
            problems.append(f"{earlier} must come before {name} in its group")
        elif earlier not in group and parse_duration(rule["for"]) < 60:
            problems.append(f"{name} needs for: >= 1m to see {earlier}'s ALERTS of the same evaluation")
    return problems


@pytest.mark.parametrize("name", [n for n in sorted(alerts()) if n.startswith(PER_SERIES_PREFIXES)])
def test_novelty_and_regression_alerts_never_repeat_an_earlier_alert_of_the_series(name: str) -> None:
    """Rules never subtract: a novelty, minor or significant alert stays quiet for 6h after an alert of the same
    series at the same or a lower severity (the anomaly alert, and the novelty alert for the regression tiers),
    a critical or escalated one for 3h; the anomaly alert itself always notifies. The alerts named come first
    in Prometheus' evaluation: earlier in the same group (rules of a group run in order), or in another group
    with a ``for:`` of at least one evaluation (1m: groups run independently), so that one firing at the same
    evaluation suppresses before this one fires, as analyzer/detection/episodes.py replays them."""
    assert unless_problems(name, alerts(), rule_groups()) == []


def test_unless_convention_can_fail() -> None:
    """Each way of breaking the convention is reported: the anomaly alert after the novelty alert that names it
    in their group, a critical alert with the 6h window, a minor alert in another group than the alerts it names
    without `for: 1m`, a significant alert without `unless`,
    an `unless` on the anomaly alert."""
    shipped, groups = alerts(), rule_groups()

    def changed(name: str, **fields: object) -> dict[str, dict]:
        return {**shipped, name: {**shipped[name], **fields}}

    anomaly_last = {group: sorted(members, key=lambda alert: alert == "PerfSentinelAnomaly")
                    for group, members in groups.items()}  # fmt: skip
    assert unless_problems("PerfSentinelNovelty", shipped, anomaly_last)
    significant = shipped["PerfSentinelRegressionSignificant"]["expr"]
    assert unless_problems("PerfSentinelRegressionEscalated",
                           changed("PerfSentinelRegressionEscalated", expr=significant), groups)  # fmt: skip
    suppression = " unless " + normalized(significant).partition(" unless ")[2]
    anomaly = shipped["PerfSentinelAnomaly"]["expr"] + suppression
    assert unless_problems("PerfSentinelAnomaly", changed("PerfSentinelAnomaly", expr=anomaly), groups)
    assert unless_problems("PerfSentinelRegressionMinor", changed("PerfSentinelRegressionMinor", **{"for": "0s"}),
                           groups)  # fmt: skip
    assert unless_problems("PerfSentinelRegressionSignificant",
                           changed("PerfSentinelRegressionSignificant", expr=significant.split("unless")[0]),
                           groups)  # fmt: skip


def test_no_alert_on_the_drift_score() -> None:
    """Issue 28: the drift alert is not shipped (on nab-dev it found no window the other alerts miss, and it paged
    the most on null low-count series; docs/experiments.md). The drift score and threshold stay exported for the
    dashboards; no alerting rule reads them, and no `unless` names a drift alert."""
    for name, rule in alerts().items():
        assert "perfsentinel_drift" not in rule["expr"] and "Drift" not in rule["expr"], name
    assert not (REPO / "docs" / "runbooks" / "PerfSentinelDrift.md").exists()


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
    # the same condition as the significant alert, with the critical alerts' shorter `unless`
    significant, sep, suppression = normalized(rules["PerfSentinelRegressionSignificant"]["expr"]).partition(" unless ")
    assert sep and UNLESS.search(sep + suppression), "the significant alert has an `unless` clause"
    assert normalized(escalated["expr"]) == significant + sep + suppression.replace("[6h])", "[3h])")
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
