"""analyzer.detection.episodes: Prometheus alert-rule semantics (for, keep_firing_for, calibrated thresholds,
`unless` after
another alert of the series, rows held for several evaluations) on generated series, and agreement with the
shipped rule files under ``promtool test rules``."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from analyzer.detection import episodes
from analyzer.detection.episodes import AlertRule, AtLeast, Exceeds, Unless
from analyzer.durations import parse_duration
from tests.conftest import REPO, require_tools
from tests.dashboard_queries import exported_metric_names

MINUTE = 60.0
HOUR = 3600.0
RULE_FILES = [REPO / "rules" / "perfsentinel-anomalies.yml", REPO / "rules" / "perfsentinel-regressions.yml"]
# the columns the rules read -> the metric each is exported as, and the factor (change % are exported as ratios)
COLUMN_METRICS = {
    "anomaly_score": ("perfsentinel_anomaly_score", 1.0),
    "anomaly_threshold": ("perfsentinel_anomaly_threshold", 1.0),
    "novelty_score": ("perfsentinel_novelty_score", 1.0),
    "novelty_threshold": ("perfsentinel_novelty_threshold", 1.0),
    "drift_score": ("perfsentinel_drift_score", 1.0),
    "drift_threshold": ("perfsentinel_drift_threshold", 1.0),
    "severity": ("perfsentinel_regression_severity", 1.0),
    "change_pct": ("perfsentinel_regression_change_ratio", 0.01),
    "regression_threshold_pct": ("perfsentinel_regression_threshold_ratio", 0.01),
}


def minutes(count: int) -> np.ndarray:
    return np.arange(count) * MINUTE


def rows_where(flags: np.ndarray) -> list[int]:
    return np.flatnonzero(flags).tolist()


# ------------------------------------------------------------------ for / keep_firing_for
def test_firing_needs_the_condition_held_for_the_hold_time() -> None:
    active = np.array([0, 1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0], dtype=bool)
    state = episodes.firing(active, minutes(len(active)), hold=4 * MINUTE, keep_firing_for=0.0)
    # pending from minute 1, firing at minute 5 (held 4 minutes), resolved at the first false evaluation;
    # the 2-minute run at minutes 7-8 never fires
    assert rows_where(state) == [5]


def test_a_zero_hold_fires_at_the_first_true_evaluation() -> None:
    active = np.array([0, 1, 0, 0], dtype=bool)
    assert rows_where(episodes.firing(active, minutes(4), hold=0.0, keep_firing_for=0.0)) == [1]


def test_keep_firing_for_bridges_gaps_shorter_than_it() -> None:
    active = np.zeros(40, dtype=bool)
    active[[0, 1, 5, 6]] = True  # a 3-minute gap: still the same episode
    active[20] = True  # 14 minutes after the last false evaluation started: a new episode
    state = episodes.firing(active, minutes(40), hold=0.0, keep_firing_for=10 * MINUTE)
    # first false evaluation at minute 2 -> would resolve at 12, but minute 5 is true again;
    # next false at minute 7 -> resolved at minute 17
    assert state[:17].all() and not state[17:20].any() and state[20]
    assert rows_where(episodes.onsets(state)) == [0, 20]


def test_a_pending_alert_is_dropped_by_one_false_evaluation_despite_keep_firing_for() -> None:
    active = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    state = episodes.firing(active, minutes(6), hold=2 * MINUTE, keep_firing_for=60 * MINUTE)
    assert rows_where(state) == [5]


# ------------------------------------------------------------------ conditions
def test_exceeds_compares_with_the_series_threshold_row_by_row() -> None:
    rule = AlertRule("X", "score", 0.0, 0.0, exceeds=Exceeds("score", "threshold"))
    score = np.array([2.0, 2.0, 2.0, np.nan, 5.0, 3.0])
    threshold = np.array([1.0, 2.0, 3.0, 1.0, np.nan, 2.9])
    # strictly above; an absent sample of either side never matches
    columns = {"score": score, "threshold": threshold}
    assert episodes.condition(rule, columns, minutes(6)).tolist() == [True, False, False, False, False, True]
    assert not episodes.condition(rule, {"score": score}, minutes(6)).any()  # no threshold series: never fires
    assert not episodes.notifications({"score": score}, minutes(6), (rule,)).any()


def test_at_least_needs_the_other_column_large_enough_in_either_direction() -> None:
    rule = AlertRule("X", "score", 0.0, 0.0, above=1.0, at_least=AtLeast("change", 5.0))
    score = np.full(5, 3.0)
    change = np.array([10.0, 4.9, -6.0, np.nan, 5.0])
    columns = {"score": score, "change": change}
    assert episodes.condition(rule, columns, minutes(5)).tolist() == [True, False, True, False, True]
    assert not episodes.condition(rule, {"score": score}, minutes(5)).any()  # the other column is absent
    assert episodes.notifications(columns, minutes(5), (rule,)).tolist() == [True, False, True, False, True]
    assert not episodes.notifications({"score": score}, minutes(5), (rule,)).any()


def test_absent_samples_never_match_and_missing_columns_never_fire() -> None:
    rule = AlertRule("X", "score", 0.0, 0.0, above=1.0)
    values = np.array([np.nan, 2.0, np.nan])
    assert episodes.condition(rule, {"score": values}, minutes(3)).tolist() == [False, True, False]
    assert not episodes.notifications({"other": values}, minutes(3), (rule,)).any()
    assert rows_where(episodes.rule_onsets({"other": values}, minutes(3), (rule,))["X"]) == []


def test_rows_are_evaluated_in_time_order_and_reported_in_input_order() -> None:
    rule = AlertRule("X", "score", 2 * MINUTE, 0.0, above=1.0)
    times = np.array([3, 0, 1, 2, 4]) * MINUTE
    values = np.array([5.0, 0.0, 5.0, 5.0, 5.0])  # in time order: 0 5 5 5 5 -> fires at minute 3
    assert episodes.notifications({"score": values}, times, (rule,)).tolist() == [True, False, False, False, False]
    states = episodes.rule_states({"score": values}, times, (rule,))
    assert states["X"].tolist() == [True, False, False, False, True]


# ------------------------------------------------------------------ unless
FIRST = AlertRule("A", "a", 0.0, 0.0, above=1.0)
QUIET_AFTER_FIRST = AlertRule("B", "b", 0.0, 0.0, above=1.0, unless=Unless(("A",), 5 * MINUTE))


def test_unless_keeps_a_rule_quiet_for_the_window_after_the_other_fired() -> None:
    a = np.zeros(12)
    a[2] = 5.0  # A fires at minute 2 only
    columns, times = {"a": a, "b": np.full(12, 5.0)}, minutes(12)
    states = episodes.rule_states(columns, times, (FIRST, QUIET_AFTER_FIRST))
    assert rows_where(states["A"]) == [2]
    # B fires from minute 0, is quiet from A's firing evaluation to 5 minutes after it (max_over_time over
    # [t - 5m, t] still holds it at minute 7), and fires again at minute 8: a new episode
    assert rows_where(states["B"]) == [0, 1, 8, 9, 10, 11]
    assert rows_where(episodes.rule_onsets(columns, times, (FIRST, QUIET_AFTER_FIRST))["B"]) == [0, 8]


def test_unless_counts_firing_not_pending_and_only_rules_replayed_before() -> None:
    pending_only = dataclasses.replace(FIRST, hold=10 * MINUTE)
    a = np.zeros(12)
    a[2:5] = 5.0  # pending for 3 minutes, never firing
    columns, times = {"a": a, "b": np.full(12, 5.0)}, minutes(12)
    assert episodes.rule_states(columns, times, (pending_only, QUIET_AFTER_FIRST))["B"].all()
    a[2] = 5.0
    # B replayed before A, or without A: A's alerts are unknown to it, nothing suppresses
    assert episodes.rule_states(columns, times, (QUIET_AFTER_FIRST, FIRST))["B"].all()
    assert episodes.rule_states(columns, times, (QUIET_AFTER_FIRST,))["B"].all()


def test_shipped_rules_name_only_rules_replayed_before_them() -> None:
    seen: set[str] = set()
    for rule in episodes.SHIPPED_RULES:
        if rule.unless is not None:
            assert set(rule.unless.rules) <= seen, rule.name
        seen.add(rule.name)


def checkout_after_anomaly(rows: int = 720) -> dict[str, np.ndarray]:
    """The checkout series of rules/tests/regressions_test.yml: an anomaly (score 5, threshold 1) at minutes 0-9,
    a significant 20% regression (threshold 5%) from minute 20 on."""
    anomaly = np.full(rows, 0.1)
    anomaly[:10] = 5.0
    severity, change = np.zeros(rows), np.zeros(rows)
    severity[20:], change[20:] = 2.0, 20.0
    return {"anomaly_score": anomaly, "anomaly_threshold": np.ones(rows), "severity": severity, "change_pct": change,
            "regression_threshold_pct": np.full(rows, 5.0)}  # fmt: skip


def test_a_significant_regression_after_an_anomaly_warns_6h_and_escalates_3h_later() -> None:
    columns = checkout_after_anomaly()
    starts = {name: rows_where(rows) for name, rows in episodes.rule_onsets(columns, minutes(720)).items()}
    # the anomaly alert fires at minute 0, resolves at 70 (keep_firing_for 1h): quiet 6h after its last firing
    # evaluation (69), pending from 430, the warning fires at 440; the escalation is quiet 3h, pending from 250,
    # fires at 280 (for: 30m)
    assert starts["PerfSentinelAnomaly"] == [0]
    assert starts["PerfSentinelRegressionSignificant"] == [440]
    assert starts["PerfSentinelRegressionEscalated"] == [280]
    del columns["anomaly_score"]  # without the anomaly: the warning after its for: 10m, the escalation at 50
    without = episodes.rule_onsets(columns, minutes(720))
    assert rows_where(without["PerfSentinelRegressionSignificant"]) == [30]
    assert rows_where(without["PerfSentinelRegressionEscalated"]) == [50]


def test_a_critical_verdict_on_the_burst_an_anomaly_alert_reported_does_not_page_again() -> None:
    """A burst: the anomaly alert fires, and the verdict on the same burst turns critical an hour later and
    clears an hour after that. One notification; a critical regression that outlasts the 3 hours after the
    anomaly alert resolved still pages."""
    rows = 720
    anomaly = np.full(rows, 0.1)
    anomaly[:60] = 8.0  # the burst, minutes 0-59; the anomaly alert resolves at 120 (last firing evaluation 119)
    severity, change = np.zeros(rows), np.zeros(rows)
    severity[60:120], change[60:120] = 3.0, 300.0
    columns = {"anomaly_score": anomaly, "anomaly_threshold": np.ones(rows), "severity": severity,
               "change_pct": change, "regression_threshold_pct": np.full(rows, 5.0)}  # fmt: skip
    starts = {name: rows_where(found) for name, found in episodes.rule_onsets(columns, minutes(rows)).items()}
    assert starts["PerfSentinelAnomaly"] == [0] and starts["PerfSentinelRegressionCritical"] == []
    severity[60:], change[60:] = 3.0, 300.0  # the regression stands: pending from 300 (119 + 3h + 1), pages at 305
    assert rows_where(episodes.rule_onsets(columns, minutes(rows))["PerfSentinelRegressionCritical"]) == [305]


def test_a_growing_anomaly_is_one_notification_and_a_raised_threshold_silences_a_repeat() -> None:
    rows = 2 * 1440
    score = np.full(rows, 0.3)
    score[600:640] = np.linspace(2.0, 9.0, 40)  # day 1: grows from 2 to 9 within one episode
    score[1440 + 600 : 1440 + 640] = 4.0  # day 2, the same time: below the threshold raised at a refit
    threshold = np.where(np.arange(rows) < 1000, 1.0, 5.0)
    columns = {"anomaly_score": score, "anomaly_threshold": threshold}
    assert rows_where(episodes.rule_onsets(columns, minutes(rows))["PerfSentinelAnomaly"]) == [600]
    columns["anomaly_threshold"] = np.ones(rows)  # at the floor the repeat notifies again
    assert rows_where(episodes.rule_onsets(columns, minutes(rows))["PerfSentinelAnomaly"]) == [600, 2040]


# ------------------------------------------------------------------ rows held for several evaluations
def test_an_hourly_row_held_for_its_hour_completes_a_10m_for_inside_the_row() -> None:
    rule = AlertRule("X", "score", 10 * MINUTE, 0.0, above=1.0)
    times = np.arange(4) * HOUR
    score = np.array([0.0, 5.0, 0.0, 0.0])
    # one row per evaluation: the condition holds at one evaluation only, for: 10m never completes
    assert not episodes.firing(score > 1, times, rule.hold, rule.keep_firing_for).any()
    assert not episodes.notifications({"score": score}, times, (rule,)).any()
    # the service exports the row's values for an hour, Prometheus evaluates every minute: 59 evaluations see
    # the condition, the alert fires 10 minutes into the row and resolves with the next row
    until = episodes.evaluations_until(times, MINUTE)
    assert until.tolist() == [HOUR - MINUTE, 2 * HOUR - MINUTE, 3 * HOUR - MINUTE, 4 * HOUR - MINUTE]
    assert rows_where(episodes.firing(score > 1, times, rule.hold, rule.keep_firing_for, until=until)) == [1]
    assert rows_where(episodes.notifications({"score": score}, times, (rule,), interval=MINUTE)) == [1]
    assert rows_where(episodes.rule_states({"score": score}, times, (rule,), interval=MINUTE)["X"]) == [1]
    # the last row is held for the median step too
    last = np.array([0.0, 0.0, 0.0, 5.0])
    assert rows_where(episodes.rule_onsets({"score": last}, times, (rule,), interval=MINUTE)["X"]) == [3]
    # a 5-minute row is shorter than for: 10m: it takes three rows (minutes 0, 5, 10)
    five = np.arange(4) * 5 * MINUTE
    held = np.array([5.0, 5.0, 5.0, 0.0])
    assert rows_where(episodes.notifications({"score": held[:1]}, five[:1], (rule,), interval=MINUTE)) == []
    assert rows_where(episodes.notifications({"score": held}, five, (rule,), interval=MINUTE)) == [2]


def test_keep_firing_for_runs_out_inside_a_held_row() -> None:
    rule = AlertRule("X", "score", 0.0, 90 * MINUTE, above=1.0)
    times = np.arange(5) * HOUR
    score = np.array([5.0, 0.0, 0.0, 0.0, 0.0])
    # first false evaluation at 1:00: resolved at the evaluation at 2:30, inside the row of 2:00
    assert rows_where(episodes.rule_states({"score": score}, times, (rule,), interval=MINUTE)["X"]) == [0, 1]
    # one evaluation per row: still firing at 2:00, resolved at 3:00
    assert rows_where(episodes.rule_states({"score": score}, times, (rule,))["X"]) == [0, 1, 2]


# ------------------------------------------------------------------ the table matches the YAML
def shipped_yaml_rules() -> dict[str, dict]:
    return {rule["alert"]: rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "alert" in rule}  # fmt: skip


def promql_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def expected_expr(rule: AlertRule) -> str:
    """The PromQL a table entry stands for, written as the shipped files write it."""

    def metric(column: str) -> str:
        return COLUMN_METRICS[column][0]

    def number(column: str, value: float) -> str:
        return f"{value * COLUMN_METRICS[column][1]:g}"

    parts = []
    if rule.exceeds is not None:
        parts.append(f"{metric(rule.exceeds.column)} > {metric(rule.exceeds.other)}")
    if rule.above is not None:
        parts.append(f"{metric(rule.column)} > {number(rule.column, rule.above)}")
    if rule.equals is not None:
        parts.append(f"{metric(rule.column)} == {number(rule.column, rule.equals)}")
    if rule.at_least is not None:
        parts.append(f"abs({metric(rule.at_least.column)}) >= {number(rule.at_least.column, rule.at_least.value)}")
    expr = " and ".join(parts)
    if rule.unless is not None:
        names = rule.unless.rules
        matcher = f'alertname="{names[0]}"' if len(names) == 1 else f'alertname=~"{"|".join(names)}"'
        expr += (f" unless ignoring(alertname, alertstate, severity) max_over_time(ALERTS{{{matcher}, "
                 f'alertstate="firing"}}[{promql_duration(rule.unless.window)}])')  # fmt: skip
    return expr


def test_shipped_rules_table_matches_the_rule_files() -> None:
    shipped = shipped_yaml_rules()
    assert {rule.name for rule in episodes.SHIPPED_RULES} == set(shipped)
    assert {name for name, _ in COLUMN_METRICS.values()} <= exported_metric_names()
    for rule in episodes.SHIPPED_RULES:
        yaml_rule = shipped[rule.name]
        assert parse_duration(yaml_rule.get("for", "0s")) == rule.hold, rule.name
        assert parse_duration(yaml_rule.get("keep_firing_for", "0s")) == rule.keep_firing_for, rule.name
        # the whole expression: thresholds, compared columns -> metric names, unless rule names and window
        assert " ".join(yaml_rule["expr"].split()) == expected_expr(rule), rule.name


def test_the_table_check_can_fail() -> None:
    shipped = shipped_yaml_rules()
    rules = {rule.name: rule for rule in episodes.SHIPPED_RULES}

    def matches(rule: AlertRule) -> bool:
        return " ".join(shipped[rule.name]["expr"].split()) == expected_expr(rule)

    novelty, minor = rules["PerfSentinelNovelty"], rules["PerfSentinelRegressionMinor"]
    assert matches(novelty) and matches(minor)
    assert not matches(dataclasses.replace(novelty, at_least=AtLeast("change_pct", 5.0)))
    assert not matches(dataclasses.replace(novelty, exceeds=Exceeds("novelty_score", "anomaly_threshold")))
    assert not matches(dataclasses.replace(minor, unless=Unless(("PerfSentinelAnomaly",), 6 * HOUR)))
    assert not matches(dataclasses.replace(minor, unless=dataclasses.replace(minor.unless, window=3 * HOUR)))
    assert not matches(dataclasses.replace(minor, unless=None))
    assert not matches(dataclasses.replace(minor, equals=2))


# ------------------------------------------------------------------ agreement with promtool on the shipped files
SERIES_LABELS = {"target": "api", "service": "checkout"}
DAY_ROWS = 1440


def blocks(rng: np.random.Generator, rows: int, choices: list[float], size: int = 360) -> np.ndarray:
    """A calibrated threshold: re-set at every refit (every 6 hours), absent for one random hour (no
    calibration yet, or a scrape gap)."""
    values = np.repeat(rng.choice(choices, rows // size + 1), size)[:rows]
    gap = rng.integers(0, rows - 60)
    values[gap : gap + 60] = np.nan
    return values


def generated_metrics(rows: int, seed: int) -> dict[str, np.ndarray]:
    """One minute per row (three days), known by construction, not by a model; random where it does not matter.

    Anomaly scores inside the band, with a burst of spikes of random height and length in the first 6 hours
    of days 1 and 2 (one of 9 early in each, which fires); on day 2 the threshold is 2.5 and spikes of 2 and
    2.5 come first (not above it: quiet); on day 3 a spike of 9 while the threshold is absent (quiet).
    Day 1: a significant regression across the end of the anomaly's 6-hour suppression (fires after it), then a
    minor one (fires). Day 2: a significant regression during the burst (held back; it escalates all the same),
    a novelty episode across the end of the suppression (fires after it, then holds back the regression tiers),
    a minor regression behind the novelty alert and one across the end of that suppression. Random regression
    episodes of every tier elsewhere, flickering severities; change % 20 (exactly 5 at some rows); thresholds
    re-set every 6 hours, the regression threshold at 25% (above the change) in the last 6 hours. Novelty scores
    also in the first anomaly burst (held back by the anomaly alert) and late on day 3 (fires). Drift scores and
    thresholds with bumps above them (days 1-3): exported, but no shipped rule reads them (no drift alert since
    issue 28), so they change nothing."""
    rng = np.random.default_rng(seed)

    def spikes(start: int, span: int) -> None:
        for begin in start + rng.choice(span, 6, replace=False):
            score[begin : begin + rng.integers(1, 40)] = rng.choice([1.2, 2.0, 2.5, 4.0, 9.0])

    score = rng.uniform(0.0, 0.9, rows)
    anomaly_threshold = blocks(rng, rows, [1.0, 1.0, 1.5, 2.5, 5.0])
    spikes(0, 320)
    first = rng.integers(0, 120)
    score[first : first + 10] = 9.0
    anomaly_threshold[1440:1800] = 2.5
    score[1450:1460], score[1470:1480] = 2.0, 2.5
    spikes(1500, 260)
    first = 1500 + rng.integers(0, 60)
    score[first : first + 10] = 9.0
    score[3500:3520], anomaly_threshold[3480:3540] = 9.0, np.nan

    drift = rng.uniform(0.0, 0.8, rows)
    drift[150:270] = 2.5
    drift[1600:2400] = 2.5
    drift[3200:3300] = 6.0
    drift[3600:3640] = 1.5
    change = np.full(rows, 20.0)
    change[rng.random(rows) < 0.01] = 5.0
    change[150:200] = -20.0
    change[3200:3300] = np.round(rng.uniform(-4.9, 4.9, 100), 1)

    severity = np.zeros(rows)
    for start, tier in zip(rng.choice(rows - 150, 9, replace=False), [1, 2, 3] * 3, strict=True):
        severity[start : start + rng.integers(20, 150)] = tier
    severity[300:1000], severity[1000:1100] = 2, 1
    severity[2000:2100], severity[2600:2700], severity[2800:3100] = 2, 1, 1
    severity[rng.random(rows) < 0.01] = 0  # flicker
    regression_threshold = blocks(rng, rows, [5.0, 5.0, 15.0])
    regression_threshold[-360:] = 25.0
    novelty = rng.uniform(0.0, 0.9, rows)
    novelty[100:140] = 3.0  # during day 1's anomaly burst: held back
    novelty[1600:2400] = 3.0  # day 2: across the end of the anomaly's suppression, then holds back the tiers
    novelty[4100:4140] = 3.0  # late on day 3, where nothing else fires: fires
    return {"anomaly_score": score, "anomaly_threshold": anomaly_threshold, "severity": severity,
            "novelty_score": novelty, "novelty_threshold": blocks(rng, rows, [1.0, 1.0, 2.0]),
            "change_pct": change, "drift_score": drift, "drift_threshold": blocks(rng, rows, [1.0, 1.0, 2.0]),
            "regression_threshold_pct": regression_threshold}  # fmt: skip


def promtool_values(array: np.ndarray) -> str:
    """Exact values (repr round-trips); an absent sample is a staleness marker, as a scrape writes when the
    exporter stops exporting a series (without one, Prometheus would keep using the last sample for a while)."""
    return " ".join("stale" if np.isnan(v) else repr(float(v)) for v in array)


def promtool_test(metrics: dict[str, np.ndarray], checks: dict[str, list[tuple[int, bool]]],
                  rule_labels: dict[str, dict], rule_paths: list[Path]) -> dict:  # fmt: skip
    """A promtool unit test: the metrics as input series (one sample a minute), evaluated every minute, anomaly
    group first; ``checks``: alert -> (minute, firing) expectations."""
    labels = ",".join(f'{k}="{v}"' for k, v in SERIES_LABELS.items())
    series = [{"series": f"{COLUMN_METRICS[name][0]}{{{labels}}}",
               "values": promtool_values(array * COLUMN_METRICS[name][1])}
              for name, array in metrics.items()]  # fmt: skip
    tests = [{"eval_time": f"{minute}m", "alertname": name,
              "exp_alerts": [{"exp_labels": {**SERIES_LABELS, **rule_labels[name]}}] if fires else []}
             for name, points in checks.items() for minute, fires in points]  # fmt: skip
    return {"rule_files": [str(p) for p in rule_paths], "evaluation_interval": "1m",
            "group_eval_order": ["perfsentinel-anomalies", "perfsentinel-regressions"],
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


def run_promtool(tmp_path: Path, test: dict) -> subprocess.CompletedProcess:
    test_file = tmp_path / "agreement_test.yml"
    test_file.write_text(yaml.safe_dump(test))
    return subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def check_rows(state: np.ndarray, rng: np.random.Generator, also: np.ndarray) -> list[tuple[int, bool]]:
    """Every row where the firing state changes and the row before it, the ``also`` rows, and random rows."""
    changes = np.flatnonzero(state != np.r_[False, state[:-1]])
    rows = set(changes) | set(changes - 1) | set(also) | set(rng.choice(len(state), 20, replace=False))
    return [(int(row), bool(state[row])) for row in sorted(rows) if row >= 0]


def without_unless(rules: tuple[AlertRule, ...]) -> tuple[AlertRule, ...]:
    return tuple(dataclasses.replace(rule, unless=None) for rule in rules)


@pytest.mark.parametrize("seed", [1, 2])
def test_episodes_agree_with_promtool_on_the_shipped_rules(tmp_path: Path, seed: int) -> None:
    require_tools("promtool")
    rows = 3 * DAY_ROWS  # 6-hour suppressions, 3-hour keep_firing_for and threshold refits all matter
    metrics = generated_metrics(rows, seed)
    times = minutes(rows)
    rng = np.random.default_rng(seed)
    states = episodes.rule_states(metrics, times, episodes.SHIPPED_RULES)
    unsuppressed = episodes.rule_states(metrics, times, without_unless(episodes.SHIPPED_RULES))
    checks = {}
    for rule in episodes.SHIPPED_RULES:
        state = states[rule.name]
        assert episodes.onsets(state).any(), f"the generated series should make {rule.name} fire"
        # where the `unless` changed the state: its first and last rows of each run
        differs = state != unsuppressed[rule.name]
        if rule.unless is not None:
            assert differs.any(), f"the generated series should make the unless of {rule.name} matter"
        else:
            assert not differs.any(), rule.name  # a rule without unless does not depend on the others
        edges = np.flatnonzero(differs & ~(np.r_[False, differs[:-1]] & np.r_[differs[1:], False]))
        checks[rule.name] = check_rows(state, rng, edges)
    # the cases the generated series were built for: held back by an earlier alert, then firing after the 6 hours
    for name, start, end in (("PerfSentinelRegressionSignificant", 300, 1000), ("PerfSentinelNovelty", 1600, 2400),
                             ("PerfSentinelRegressionMinor", 2800, 3100)):  # fmt: skip
        held_back = episodes.onsets(unsuppressed[name][start:end]).argmax()
        assert held_back < episodes.onsets(states[name][start:end]).argmax(), name
    significant, escalated = states["PerfSentinelRegressionSignificant"], states["PerfSentinelRegressionEscalated"]
    assert (escalated & ~significant & unsuppressed["PerfSentinelRegressionSignificant"]).any(), (
        "an escalation pages while the warning is suppressed")  # fmt: skip
    anomaly = states["PerfSentinelAnomaly"]
    assert not anomaly[1450:1490].any() and not anomaly[3480:3540].any()  # at the threshold; without one
    # no rule reads the drift columns: the same states without them
    without_drift = {name: array for name, array in metrics.items() if not name.startswith("drift_")}
    replay = episodes.rule_states(without_drift, times, episodes.SHIPPED_RULES)
    assert all(np.array_equal(replay[name], states[name]) for name in states)
    rule_paths, rule_labels = stripped_rule_files(tmp_path)
    done = run_promtool(tmp_path, promtool_test(metrics, checks, rule_labels, rule_paths))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_the_agreement_check_can_fail(tmp_path: Path) -> None:
    """Expectations computed without the `unless` clauses (what the rules did before) disagree with promtool."""
    require_tools("promtool")
    columns = checkout_after_anomaly(480)
    states = episodes.rule_states(columns, minutes(480), without_unless(episodes.SHIPPED_RULES))
    significant = states["PerfSentinelRegressionSignificant"]
    assert significant[30]  # not suppressed in this replay; Prometheus holds the warning back until 440
    checks = {"PerfSentinelRegressionSignificant": [(30, True)]}
    rule_paths, rule_labels = stripped_rule_files(tmp_path)
    done = run_promtool(tmp_path, promtool_test(columns, checks, rule_labels, rule_paths))
    assert done.returncode != 0
    correct = episodes.rule_states(columns, minutes(480))["PerfSentinelRegressionSignificant"]
    checks = {"PerfSentinelRegressionSignificant": [(30, bool(correct[30])), (440, bool(correct[440]))]}
    assert checks["PerfSentinelRegressionSignificant"] == [(30, False), (440, True)]
    assert run_promtool(tmp_path, promtool_test(columns, checks, rule_labels, rule_paths)).returncode == 0


def test_hourly_rows_agree_with_promtool_at_the_end_of_each_row(tmp_path: Path) -> None:
    """Hourly samples, rules evaluated every minute: with ``interval`` the state after each row is Prometheus'
    state at the row's last evaluation (for: 10m and 30m complete inside a row; keep_firing_for runs across)."""
    require_tools("promtool")
    hours = 12
    times = np.arange(hours) * HOUR
    severity = np.array([0, 2, 0, 0, 0, 0, 2, 2, 0, 3, 0, 0], dtype=float)
    columns = {"severity": severity, "change_pct": np.full(hours, 20.0),
               "regression_threshold_pct": np.full(hours, 5.0)}  # fmt: skip
    states = episodes.rule_states(columns, times, interval=MINUTE)
    assert rows_where(episodes.onsets(states["PerfSentinelRegressionSignificant"])) == [1, 6]
    assert rows_where(episodes.onsets(states["PerfSentinelRegressionEscalated"])) == [1, 6]
    assert rows_where(episodes.onsets(states["PerfSentinelRegressionCritical"])) == [9]
    until = episodes.evaluations_until(times, MINUTE)
    checks = {name: [(int(until[row] // MINUTE), bool(states[name][row])) for row in range(hours)]
              for name in ("PerfSentinelRegressionSignificant", "PerfSentinelRegressionEscalated",
                           "PerfSentinelRegressionCritical")}  # fmt: skip
    # the service exports each hour's values until the next sample: Prometheus scrapes them every minute
    scraped = {name: np.repeat(values, 60) for name, values in columns.items()}
    rule_paths, rule_labels = stripped_rule_files(tmp_path)
    done = run_promtool(tmp_path, promtool_test(scraped, checks, rule_labels, rule_paths))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
