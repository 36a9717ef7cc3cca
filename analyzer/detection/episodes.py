"""Alert episodes: which evaluations of Perf Sentinel's per-series metrics start a notification.

The backtest uses this to write its ``alert`` column: 1 on the rows where the shipped Prometheus alert rules
(rules/perfsentinel-anomalies.yml, rules/perfsentinel-regressions.yml) would start a new firing alert, 0 elsewhere.
Each row is one rule evaluation at the scoring cadence, with the row's exported values.

Prometheus semantics reproduced (rules/alerting.go): a rule whose condition turns true is pending from that
evaluation; it fires at the first evaluation at least ``for`` later if the condition held at every evaluation in
between (a false one drops the pending alert); once firing, a false condition starts ``keep_firing_for``: the alert
stays firing until an evaluation at least ``keep_firing_for`` after the first false one, and a true condition in
between cancels that. Alertmanager then sends one notification per firing episode; a new episode needs the alert
to have resolved first. Not modelled: inhibition (a higher-severity alert of the same series mutes an info or
warning one; a muted alert still firing when the inhibition ends is sent then) and Alertmanager's repeat_interval
reminders for an episode that lasts (they are not new detections).

tests/test_episodes.py checks, with ``promtool test rules`` on the shipped files, that these rules and the YAML
describe the same alerts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

HOUR = 3600.0


@dataclass(frozen=True)
class AtLeast:
    """``and abs(y) >= value``: a second column of the same series must be at least this large (either sign)."""

    column: str
    value: float


@dataclass(frozen=True)
class Exceeds:
    """``column > other``: a column compared with another of the same series (its calibrated threshold); an
    absent sample of either never matches."""

    column: str
    other: str


@dataclass(frozen=True)
class Unless:
    """``unless ignoring(alertname, alertstate, severity) max_over_time(ALERTS{alertname=~"A|B",
    alertstate="firing"}[window])``: quiet while one of ``rules`` of the same series fired within ``window``."""

    rules: tuple[str, ...]
    window: float


@dataclass(frozen=True)
class AlertRule:
    """One shipped alerting rule, reduced to what decides when it fires: ``column > above`` (or ``== equals``),
    optionally gated by the size of another column (``at_least``), by the series' calibrated threshold
    (``exceeds``) and by other rules that fired recently (``unless``), held ``hold`` seconds (``for:``), kept
    firing ``keep_firing_for`` seconds after the condition ends."""

    name: str
    column: str
    hold: float
    keep_firing_for: float
    above: float | None = None
    equals: float | None = None
    at_least: AtLeast | None = None
    exceeds: Exceeds | None = None
    unless: Unless | None = None


ANOMALY_KEEP = 1 * HOUR  # rules/perfsentinel-anomalies.yml: anomaly and novelty
SUSTAINED_KEEP = 3 * HOUR  # rules/perfsentinel-regressions.yml: regression tiers
# novelty and regression alerts add what an earlier alert has not already sent for the series (rules never
# subtract); critical ones wait less, so a critical regression that outlasts the incident still pages
AFTER_ANOMALY = Unless(("PerfSentinelAnomaly",), 6 * HOUR)
AFTER_ANOMALY_OR_NOVELTY = Unless(("PerfSentinelAnomaly", "PerfSentinelNovelty"), 6 * HOUR)
CRITICAL_AFTER_ANOMALY_OR_NOVELTY = Unless(("PerfSentinelAnomaly", "PerfSentinelNovelty"), 3 * HOUR)
CALIBRATED_CHANGE = Exceeds("change_pct", "regression_threshold_pct")

# The per-series alerts of the shipped rule files (names, thresholds and durations must match the YAML), in an
# order where a rule comes after the rules its ``unless`` names.
SHIPPED_RULES: tuple[AlertRule, ...] = (
    AlertRule("PerfSentinelAnomaly", "anomaly_score", 0.0, ANOMALY_KEEP,
              exceeds=Exceeds("anomaly_score", "anomaly_threshold")),
    AlertRule("PerfSentinelNovelty", "novelty_score", 0.0, ANOMALY_KEEP,
              exceeds=Exceeds("novelty_score", "novelty_threshold"), unless=AFTER_ANOMALY),
    AlertRule("PerfSentinelRegressionMinor", "severity", 1800.0, SUSTAINED_KEEP, equals=1,
              exceeds=CALIBRATED_CHANGE, unless=AFTER_ANOMALY_OR_NOVELTY),
    AlertRule("PerfSentinelRegressionSignificant", "severity", 600.0, SUSTAINED_KEEP, equals=2,
              exceeds=CALIBRATED_CHANGE, unless=AFTER_ANOMALY_OR_NOVELTY),
    AlertRule("PerfSentinelRegressionCritical", "severity", 300.0, SUSTAINED_KEEP, equals=3,
              exceeds=CALIBRATED_CHANGE, unless=CRITICAL_AFTER_ANOMALY_OR_NOVELTY),
    AlertRule("PerfSentinelRegressionEscalated", "severity", 1800.0, SUSTAINED_KEEP, equals=2,
              exceeds=CALIBRATED_CHANGE, unless=CRITICAL_AFTER_ANOMALY_OR_NOVELTY),
)  # fmt: skip


def rule_columns(rule: AlertRule) -> tuple[str, ...]:
    """The columns a rule's condition reads."""
    names = [rule.column]
    if rule.at_least is not None:
        names.append(rule.at_least.column)
    if rule.exceeds is not None:
        names += [rule.exceeds.column, rule.exceeds.other]
    return tuple(names)


def condition(rule: AlertRule, columns: Mapping[str, np.ndarray], times: np.ndarray) -> np.ndarray:
    """The rule's expression per row (``columns`` and ``times`` in time order); an absent sample (NaN or a
    missing column) never matches."""
    values = columns.get(rule.column)
    if values is None:
        return np.zeros(len(times), dtype=bool)
    active = np.isfinite(values)
    with np.errstate(invalid="ignore"):
        if rule.above is not None:
            active &= values > rule.above
        if rule.equals is not None:
            active &= values == rule.equals
        if rule.at_least is not None:
            other = columns.get(rule.at_least.column)
            active &= np.abs(other) >= rule.at_least.value if other is not None else False
        if rule.exceeds is not None:
            left, right = columns.get(rule.exceeds.column), columns.get(rule.exceeds.other)
            active &= left > right if left is not None and right is not None else False
    return active


def fired_within(state: np.ndarray, times: np.ndarray, window: float) -> np.ndarray:
    """Per row: the alert was firing at some row in ``[t - window, t]`` (``max_over_time(ALERTS[window])``)."""
    firing_times = times[state]
    if firing_times.size == 0:
        return np.zeros(len(times), dtype=bool)
    latest = np.searchsorted(firing_times, times, side="right") - 1
    return (latest >= 0) & (times - firing_times[np.maximum(latest, 0)] <= window)


def firing(
    active: np.ndarray, times: np.ndarray, hold: float, keep_firing_for: float, until: np.ndarray | None = None
) -> np.ndarray:
    """Whether the alert is firing after each evaluation, as Prometheus' alerting rule state machine decides.

    Each row is one evaluation, or with ``until`` (per row, the time of the last rule evaluation before the
    next row: the service keeps exporting a row's values until the next sample) every evaluation from the
    row's time to ``until``, all with the row's condition: a ``for:`` shorter than the data's step then
    completes inside the row, as it does in Prometheus."""
    until = times if until is None else until
    state = np.zeros(len(active), dtype=bool)
    pending_since: float | None = None
    false_since: float | None = None
    is_firing = False
    for row, (now, last, true) in enumerate(zip(times, until, active, strict=True)):
        if true:
            false_since = None
            if not is_firing:
                pending_since = now if pending_since is None else pending_since
                is_firing = max(now, last) - pending_since >= hold
        elif is_firing:
            false_since = now if false_since is None else false_since
            if max(now, last) - false_since >= keep_firing_for:
                is_firing, pending_since, false_since = False, None, None
        else:
            pending_since = None
        state[row] = is_firing
    return state


def onsets(state: np.ndarray) -> np.ndarray:
    """Rows where a firing episode starts (one notification each)."""
    return state & ~np.r_[False, state[:-1]]


def evaluations_until(times: np.ndarray, interval: float) -> np.ndarray:
    """Per row of ascending ``times``: the last evaluation (every ``interval`` seconds) before the next row;
    the last row is held for the median step."""
    step = float(np.median(np.diff(times))) if len(times) > 1 else interval
    following = np.r_[times[1:], times[-1] + step] if len(times) else times
    return np.maximum(times, following - interval)


def rule_states(columns: Mapping[str, np.ndarray], times: np.ndarray, rules: tuple[AlertRule, ...] = SHIPPED_RULES,
                interval: float | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Per rule, whether it is firing after each row (rows in the given order). Rows are evaluated in time order
    (stable, so repeated timestamps keep their order); ``interval``: the rule evaluation interval, when the rows
    are samples held until the next one rather than evaluations (``firing``'s ``until``)."""
    order = np.argsort(times, kind="stable")
    sorted_times = np.asarray(times, dtype=np.float64)[order]
    needed = {name for rule in rules for name in rule_columns(rule)}
    ordered = {name: np.asarray(columns[name], dtype=np.float64)[order] for name in needed if name in columns}
    until = evaluations_until(sorted_times, interval) if interval else None
    states: dict[str, np.ndarray] = {}
    for rule in rules:
        active = condition(rule, ordered, sorted_times)
        if rule.unless is not None:
            for name in rule.unless.rules:  # a rule not replayed here never fired
                if name in states:
                    active &= ~fired_within(states[name], sorted_times, rule.unless.window)
        states[rule.name] = firing(active, sorted_times, rule.hold, rule.keep_firing_for, until)
    result = {}
    for name, state in states.items():
        result[name] = np.zeros(len(times), dtype=bool)
        result[name][order] = state
    return result


def rule_onsets(columns: Mapping[str, np.ndarray], times: np.ndarray, rules: tuple[AlertRule, ...] = SHIPPED_RULES,
                interval: float | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """Per rule, the rows (in the given order) where it starts firing; a rule whose column is missing never
    fires."""
    order = np.argsort(times, kind="stable")
    result = {}
    for name, state in rule_states(columns, times, rules, interval).items():
        starts = np.zeros(len(times), dtype=bool)
        starts[order] = onsets(state[order])
        result[name] = starts
    return result


def notifications(columns: Mapping[str, np.ndarray], times: np.ndarray, rules: tuple[AlertRule, ...] = SHIPPED_RULES,
                  interval: float | None = None) -> np.ndarray:  # fmt: skip
    """Rows where any of ``rules`` starts a firing episode."""
    starts = np.zeros(len(times), dtype=bool)
    for rule_starts in rule_onsets(columns, times, rules, interval).values():
        starts |= rule_starts
    return starts
