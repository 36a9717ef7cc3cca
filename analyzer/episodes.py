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
class NewHigh:
    """``unless max_over_time(x[recent]) <= max_over_time(x[window] offset recent)``: the last ``recent`` seconds
    set a new high over the ``window`` before them (true when that window holds no sample)."""

    recent: float = 900.0
    window: float = 86400.0


@dataclass(frozen=True)
class AtLeast:
    """``and abs(y) >= value``: a second column of the same series must be at least this large (either sign)."""

    column: str
    value: float


@dataclass(frozen=True)
class AlertRule:
    """One shipped alerting rule, reduced to what decides when it fires: ``column > above`` (or ``== equals``),
    optionally gated by a new high of the same column and by the size of another column (``at_least``), held
    ``hold`` seconds (``for:``), kept firing ``keep_firing_for`` seconds after the condition ends."""

    name: str
    column: str
    hold: float
    keep_firing_for: float
    above: float | None = None
    equals: float | None = None
    new_high: NewHigh | None = None
    at_least: AtLeast | None = None


ANOMALY_KEEP = 1 * HOUR  # rules/perfsentinel-anomalies.yml
SUSTAINED_KEEP = 3 * HOUR  # rules/perfsentinel-regressions.yml: regression tiers and drift
ANOMALY_NEW_HIGH = NewHigh(recent=900.0, window=86400.0)
DRIFT_MIN_CHANGE = AtLeast("change_pct", 5.0)  # the default minor tier: a drift smaller than that is not reported

# The per-series alerts of the shipped rule files (names, thresholds and durations must match the YAML).
SHIPPED_RULES: tuple[AlertRule, ...] = (
    AlertRule("PerfSentinelAnomaly", "anomaly_score", 300.0, ANOMALY_KEEP, above=1.0, new_high=ANOMALY_NEW_HIGH),
    AlertRule("PerfSentinelAnomalySevere", "anomaly_score", 300.0, ANOMALY_KEEP, above=3.0, new_high=ANOMALY_NEW_HIGH),
    AlertRule("PerfSentinelRegressionMinor", "severity", 1800.0, SUSTAINED_KEEP, equals=1),
    AlertRule("PerfSentinelRegressionSignificant", "severity", 600.0, SUSTAINED_KEEP, equals=2),
    AlertRule("PerfSentinelRegressionCritical", "severity", 300.0, SUSTAINED_KEEP, equals=3),
    AlertRule("PerfSentinelRegressionEscalated", "severity", 1800.0, SUSTAINED_KEEP, equals=2),
    AlertRule("PerfSentinelDrift", "drift_score", 3 * HOUR, SUSTAINED_KEEP, above=1.0, at_least=DRIFT_MIN_CHANGE),
)


def new_high(values: np.ndarray, times: np.ndarray, gate: NewHigh) -> np.ndarray:
    """Per row: the maximum over rows in ``(t - recent, t]`` exceeds the maximum over ``(t - recent - window,
    t - recent]``, or that earlier range has no sample. ``times`` ascending; NaN is an absent sample."""
    present = np.where(np.isfinite(values), values, -np.inf)
    recent_start = np.searchsorted(times, times - gate.recent, side="right")
    prior_start = np.searchsorted(times, times - gate.recent - gate.window, side="right")
    ends = np.arange(1, len(times) + 1)
    result = np.zeros(len(times), dtype=bool)
    for row, (start, middle, end) in enumerate(zip(prior_start, recent_start, ends, strict=True)):
        recent = present[middle:end].max()
        prior = present[start:middle].max() if middle > start else -np.inf
        result[row] = recent > prior or (prior == -np.inf and recent > -np.inf)
    return result


def condition(rule: AlertRule, values: np.ndarray, times: np.ndarray, other: np.ndarray | None = None) -> np.ndarray:
    """The rule's expression per row (an absent sample, NaN, never matches); ``other`` holds the values of
    ``rule.at_least.column`` (absent: the rule never matches)."""
    with np.errstate(invalid="ignore"):
        active = values > rule.above if rule.above is not None else values == rule.equals
        if rule.at_least is not None:
            active &= np.abs(other) >= rule.at_least.value if other is not None else False
    active &= np.isfinite(values)
    if rule.new_high is not None:
        active &= new_high(values, times, rule.new_high)
    return active


def firing(active: np.ndarray, times: np.ndarray, hold: float, keep_firing_for: float) -> np.ndarray:
    """Whether the alert is firing after each evaluation, as Prometheus' alerting rule state machine decides."""
    state = np.zeros(len(active), dtype=bool)
    pending_since: float | None = None
    false_since: float | None = None
    is_firing = False
    for row, (now, true) in enumerate(zip(times, active, strict=True)):
        if true:
            false_since = None
            if not is_firing:
                pending_since = now if pending_since is None else pending_since
                is_firing = now - pending_since >= hold
        elif is_firing:
            false_since = now if false_since is None else false_since
            if now - false_since >= keep_firing_for:
                is_firing, pending_since, false_since = False, None, None
        else:
            pending_since = None
        state[row] = is_firing
    return state


def onsets(state: np.ndarray) -> np.ndarray:
    """Rows where a firing episode starts (one notification each)."""
    return state & ~np.r_[False, state[:-1]]


def rule_onsets(columns: Mapping[str, np.ndarray], times: np.ndarray,
                rules: tuple[AlertRule, ...] = SHIPPED_RULES) -> dict[str, np.ndarray]:  # fmt: skip
    """Per rule, the rows (in the given order) where it starts firing. Rows are evaluated in time order (stable,
    so repeated timestamps keep their order); a rule whose column is missing never fires."""
    order = np.argsort(times, kind="stable")
    sorted_times = np.asarray(times, dtype=np.float64)[order]
    result = {}
    for rule in rules:
        starts = np.zeros(len(times), dtype=bool)
        values = _column(columns, rule.column, order)
        if values is not None:
            other = _column(columns, rule.at_least.column, order) if rule.at_least else None
            active = condition(rule, values, sorted_times, other)
            starts[order] = onsets(firing(active, sorted_times, rule.hold, rule.keep_firing_for))
        result[rule.name] = starts
    return result


def _column(columns: Mapping[str, np.ndarray], name: str, order: np.ndarray) -> np.ndarray | None:
    return np.asarray(columns[name], dtype=np.float64)[order] if name in columns else None


def notifications(columns: Mapping[str, np.ndarray], times: np.ndarray,
                  rules: tuple[AlertRule, ...] = SHIPPED_RULES) -> np.ndarray:  # fmt: skip
    """Rows where any of ``rules`` starts a firing episode."""
    starts = np.zeros(len(times), dtype=bool)
    for rule_starts in rule_onsets(columns, times, rules).values():
        starts |= rule_starts
    return starts
