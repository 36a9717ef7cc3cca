"""analyzer.episodes: Prometheus alert-rule semantics (for, keep_firing_for, new highs) on generated score series,
and agreement with the shipped rule files under ``promtool test rules``."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from analyzer import episodes
from analyzer.durations import parse_duration
from analyzer.episodes import AlertRule, NewHigh
from tests.conftest import REPO, require_tools

MINUTE = 60.0
RULE_FILES = [REPO / "rules" / "perfsentinel-anomalies.yml", REPO / "rules" / "perfsentinel-regressions.yml"]


def minutes(count: int) -> np.ndarray:
    return np.arange(count) * MINUTE


def test_firing_needs_the_condition_held_for_the_hold_time() -> None:
    active = np.array([0, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0], dtype=bool)
    state = episodes.firing(active, minutes(len(active)), hold=4 * MINUTE, keep_firing_for=0.0)
    # pending from minute 1, firing at minute 5 (held 4 minutes), resolved at the first false evaluation;
    # the 2-minute run at minutes 7-8 never fires
    assert state.nonzero()[0].tolist() == [5]


def test_keep_firing_for_bridges_gaps_shorter_than_it() -> None:
    active = np.zeros(40, dtype=bool)
    active[[0, 1, 5, 6]] = True  # a 3-minute gap: still the same episode
    active[20] = True  # 14 minutes after the last false evaluation started: a new episode
    state = episodes.firing(active, minutes(40), hold=0.0, keep_firing_for=10 * MINUTE)
    # first false evaluation at minute 2 -> would resolve at 12, but minute 5 is true again;
    # next false at minute 7 -> resolved at minute 17
    assert state[:17].all() and not state[17:20].any() and state[20]
    assert episodes.onsets(state).nonzero()[0].tolist() == [0, 20]


def test_a_pending_alert_is_dropped_by_one_false_evaluation_despite_keep_firing_for() -> None:
    active = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    state = episodes.firing(active, minutes(6), hold=2 * MINUTE, keep_firing_for=60 * MINUTE)
    assert state.nonzero()[0].tolist() == [5]


def test_new_high_compares_the_recent_window_with_the_one_before() -> None:
    gate = NewHigh(recent=3 * MINUTE, window=10 * MINUTE)
    values = np.array([1.0, 5, 1, 1, 1, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 6, 1, np.nan, 1])
    high = episodes.new_high(values, minutes(len(values)), gate)
    # minute 0: nothing before -> a new high; minutes 1-3 still carry the 5 in their recent window; at minute 5
    # the prior window (minutes -8..2] holds the 5, so the 4 is not a new high
    assert high[:4].all() and not high[4:15].any()
    assert high[15:18].all() and not high[18]  # the 6 beats everything before; NaN is an absent sample


def test_at_least_needs_the_other_column_large_enough_in_either_direction() -> None:
    rule = AlertRule("X", "score", 0.0, 0.0, above=1.0, at_least=episodes.AtLeast("change", 5.0))
    score = np.full(5, 3.0)
    change = np.array([10.0, 4.9, -6.0, np.nan, 5.0])
    assert episodes.condition(rule, score, minutes(5), change).tolist() == [True, False, True, False, True]
    assert not episodes.condition(rule, score, minutes(5)).any()  # the other column is absent
    assert episodes.notifications({"score": score, "change": change}, minutes(5), (rule,)).tolist() == [
        True, False, True, False, True]  # fmt: skip
    assert not episodes.notifications({"score": score}, minutes(5), (rule,)).any()


def test_absent_samples_never_match_and_missing_columns_never_fire() -> None:
    rule = AlertRule("X", "score", 0.0, 0.0, above=1.0)
    values = np.array([np.nan, 2.0, np.nan])
    assert episodes.condition(rule, values, minutes(3)).tolist() == [False, True, False]
    assert not episodes.notifications({"other": values}, minutes(3), (rule,)).any()


def test_rows_are_evaluated_in_time_order_and_reported_in_input_order() -> None:
    rule = AlertRule("X", "score", 2 * MINUTE, 0.0, above=1.0)
    times = np.array([3, 0, 1, 2, 4]) * MINUTE
    values = np.array([5.0, 0.0, 5.0, 5.0, 5.0])  # in time order: 0 5 5 5 5 -> fires at minute 3
    assert episodes.notifications({"score": values}, times, (rule,)).tolist() == [True, False, False, False, False]


def test_a_daily_recurring_anomaly_notifies_once_and_a_larger_one_again() -> None:
    days = 3
    score = np.full(days * 1440, 0.3)
    for day in range(days):
        score[day * 1440 + 600 : day * 1440 + 640] = 4.0  # same height every day at 10:00
    score[2 * 1440 + 900 : 2 * 1440 + 930] = 7.0  # day 3, 15:00: higher than anything the day before
    starts = episodes.rule_onsets({"anomaly_score": score}, minutes(len(score)))
    assert starts["PerfSentinelAnomaly"].nonzero()[0].tolist() == [605, 2 * 1440 + 905]
    assert starts["PerfSentinelAnomalySevere"].nonzero()[0].tolist() == [605, 2 * 1440 + 905]


def test_shipped_rules_table_matches_the_rule_files() -> None:
    shipped = {rule["alert"]: rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
               for rule in group["rules"] if "alert" in rule}  # fmt: skip
    assert {rule.name for rule in episodes.SHIPPED_RULES} == set(shipped)
    metric = {"anomaly_score": "perfsentinel_anomaly_score", "severity": "perfsentinel_regression_severity",
              "drift_score": "perfsentinel_drift_score"}  # fmt: skip
    for rule in episodes.SHIPPED_RULES:
        yaml_rule = shipped[rule.name]
        assert parse_duration(yaml_rule["for"]) == rule.hold, rule.name
        assert parse_duration(yaml_rule.get("keep_firing_for", "0s")) == rule.keep_firing_for, rule.name
        expr = " ".join(yaml_rule["expr"].split())
        comparison = f"> {rule.above:g}" if rule.above is not None else f"== {rule.equals:g}"
        assert f"{metric[rule.column]} {comparison}" in expr, (rule.name, expr)
        if rule.new_high is None:
            assert "unless" not in expr, rule.name
        else:
            recent, window = promql_duration(rule.new_high.recent), promql_duration(rule.new_high.window)
            name = metric[rule.column]
            assert f"unless max_over_time({name}[{recent}]) <= max_over_time({name}[{window}] offset {recent})" in expr
        if rule.at_least is None:
            assert " and abs(" not in expr, rule.name
        else:
            assert rule.at_least.column == "change_pct", rule.name  # exported as a ratio
            assert f"and abs(perfsentinel_regression_change_ratio) >= {rule.at_least.value / 100:g}" in expr, expr


def promql_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


# ------------------------------------------------------------------ agreement with promtool on the shipped files
SERIES_LABELS = {"target": "api", "service": "checkout"}


def generated_metrics(rows: int, seed: int) -> dict[str, np.ndarray]:
    """One minute per row: anomaly scores with spikes of random height and length plus a daily recurring one,
    regression severities that step through every tier and flicker, a drift score with bumps of 5 h (fires), 2 h
    (does not) and 5 h with a change below 5% (does not), a change % that is negative for part of the first bump
    (still fires: the size counts). Known by construction, not by a model."""
    rng = np.random.default_rng(seed)
    score = rng.gamma(2.0, 0.2, rows)
    for start in rng.choice(rows - 60, 14, replace=False):
        score[start : start + rng.integers(1, 40)] = rng.choice([1.5, 2.5, 4.0, 4.0, 6.0, 9.0])
    for day in range(rows // 1440 + 1):
        score[200 + day * 1440 : 230 + day * 1440] = 5.0  # the same 30 minutes every day at 03:20
    severity = np.zeros(rows)
    for start, tier in zip(rng.choice(rows - 120, 9, replace=False), [1, 2, 3] * 3, strict=True):
        severity[start : start + rng.integers(20, 110)] = tier
    severity[rng.random(rows) < 0.01] = 0  # flicker
    drift = rng.uniform(0.0, 0.8, rows)
    drift[1000:1300] = 1.5  # 5 hours above 1
    drift[1100] = 0.5  # one dip: the 3-hour hold restarts at 1101 and completes at 1281
    drift[2200:2320] = 1.3  # 2 hours: never fires
    drift[2500:2800] = 1.6  # 5 hours, but ...
    change = np.full(rows, 20.0)
    change[2500:2800] = rng.uniform(-4.9, 4.9, 300)  # ... the level moved by less than 5%: never fires
    change[1000:1150] = -20.0
    return {"anomaly_score": score, "severity": severity, "drift_score": drift, "change_pct": change}


def promtool_test(metrics: dict[str, np.ndarray], checks: dict[str, list[tuple[int, bool]]],
                  rule_labels: dict[str, dict], rule_paths: list[Path]) -> dict:  # fmt: skip
    def values(array: np.ndarray) -> str:
        return " ".join(f"{v:.6g}" for v in array)

    labels = ",".join(f'{k}="{v}"' for k, v in SERIES_LABELS.items())
    inputs = {"anomaly_score": metrics["anomaly_score"], "regression_severity": metrics["severity"],
              "regression_change_ratio": metrics["change_pct"] / 100.0,
              "drift_score": metrics["drift_score"]}  # fmt: skip
    series = [{"series": f"perfsentinel_{name}{{{labels}}}", "values": values(array)} for name, array in inputs.items()]
    tests = [{"eval_time": f"{row}m", "alertname": name,
              "exp_alerts": [{"exp_labels": {**SERIES_LABELS, **rule_labels[name]}}] if fires else []}
             for name, points in checks.items() for row, fires in points]  # fmt: skip
    return {"rule_files": [str(p) for p in rule_paths], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": tests}]}  # fmt: skip


def stripped_rule_files(destination: Path) -> tuple[list[Path], dict[str, dict]]:
    """The shipped rule files without annotations (promtool compares them; their templates are tested in
    rules/tests), and each alert's labels."""
    paths, labels = [], {}
    for source in RULE_FILES:
        document = yaml.safe_load(source.read_text())
        for group in document["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
                labels[rule["alert"]] = rule.get("labels", {})
        path = destination / source.name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        paths.append(path)
    return paths, labels


def check_rows(state: np.ndarray, rng: np.random.Generator) -> list[tuple[int, bool]]:
    """Every row where the firing state changes and the row before it, plus random rows."""
    changes = np.flatnonzero(state != np.r_[False, state[:-1]])
    rows = set(changes) | set(changes - 1) | set(rng.choice(len(state), 20, replace=False))
    return [(int(row), bool(state[row])) for row in sorted(rows) if row >= 0]


@pytest.mark.parametrize("seed", [1, 2])
def test_episodes_agree_with_promtool_on_the_shipped_rules(tmp_path: Path, seed: int) -> None:
    require_tools("promtool")
    rows = 2 * 1440 + 600  # two and a half days: the 1-day new-high window and the 3-hour drift hold both matter
    metrics = generated_metrics(rows, seed)
    times = minutes(rows)
    rng = np.random.default_rng(seed)
    checks = {}
    for rule in episodes.SHIPPED_RULES:
        other = metrics[rule.at_least.column] if rule.at_least else None
        active = episodes.condition(rule, metrics[rule.column], times, other)
        state = episodes.firing(active, times, rule.hold, rule.keep_firing_for)
        assert episodes.onsets(state).any(), f"the generated series should make {rule.name} fire"
        checks[rule.name] = check_rows(state, rng) + [(2790, bool(state[2790]))]  # the end of the small drift
    drift = next(rule for rule in episodes.SHIPPED_RULES if rule.name == "PerfSentinelDrift")
    without_change = episodes.condition(dataclasses.replace(drift, at_least=None), metrics["drift_score"], times)
    assert episodes.firing(without_change, times, drift.hold, drift.keep_firing_for)[2790]  # the size gate matters
    assert dict(checks["PerfSentinelDrift"])[2790] is False
    rule_paths, rule_labels = stripped_rule_files(tmp_path)
    test_file = tmp_path / "agreement_test.yml"
    test_file.write_text(yaml.safe_dump(promtool_test(metrics, checks, rule_labels, rule_paths)))
    done = subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
