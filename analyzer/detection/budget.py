"""The notification budget of one series: the thresholds of its alerts (anomaly, novelty, regression) and the drift
threshold are calibrated at each refit on the series' own record of those statistics
(``analyzer.detection.calibration``), so that on data like that record each alert starts at most its share of
``max_notifications_per_day`` episodes a day.

The record is what the analyzer exported for the series over the last 14 days: scores of samples that came
after the baseline scoring them was fitted (out of sample, ``ScoreRecord``). Scores a baseline gives to its
own training data are smaller than that, because the fit follows the history's slow wanders and level
changes; calibrated on them alone, an AR(1)-like series paged eight times its budget. Until the record covers
14 days (after a start, or for a new series), the part it does not cover is filled with the new baseline's
in-sample scores of the history (the stand-in).

The novelty threshold and the drift threshold are +inf until the out-of-sample record holds ``ARMED_AFTER`` (two
days: the novelty alert is not armed before). Their stand-ins are the least like what comes next: an hour's level
is what a fit follows in sample, and a history window's pattern is in the reference it is compared with. On
nab-dev, new series crossed thresholds set on them in their first two days of scoring about eight times as often as
the two alerts' shares allow (with the drift alert then shipped: 27 of the 41 notifications of those days, 3 of
them in a labelled window). Two days is the least record with two peaks of its own above the level exceeded about
once a day, the peaks the calibration's tail is fitted to. The anomaly alert (one sample) and the regression alerts
(no stand-in; the floor until the record holds half a day) notify from the start, so a new series' incidents are
still reported.

The last ``regression_window`` of the record is left out, so a change under way does not raise the threshold that
should report it. The shares add up to the budget, a quarter to each of the anomaly alert (a sample far from its
expected level), the novelty alert (a window unlike the series' history, ``analyzer.detection.novelty``), the
regression alerts and the drift threshold. No alert reads the drift threshold since issue 28 (docs/experiments.md:
it found no NAB window the others miss and paged the most on null low-count series); it is exported for the
dashboards, and its quarter stays so that the other thresholds did not change: the alerts together start at most
three quarters of the budget on data like the record.

Regression thresholds follow the age of the regression (the time since its start): besides the record of every
verdict's change, the record keeps the change of verdicts that had lasted at least the drift window, twice and
four times that, and the whole regression window, and a regression that has lasted that long is compared with
the threshold of its age (``Thresholds.regression_threshold_pct``). On a bursty series every burst is a short
verdict of a large change and lifts the threshold of all verdicts to hundreds of %, but none lasts hours: a change
that has lasted longer than any of the series' own excursions of its size is not silenced by them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from analyzer.detection import novelty, regression
from analyzer.detection.calibration import Blocks, Calibration, calibrate, hourly_maxima, merge, threshold_of
from analyzer.detection.reference import attach_reference
from analyzer.detection.scoring import anomaly_scores, gated_band
from analyzer.models.base import FittedBaseline

HOUR = 3600.0
DAY = 86400.0
RECORD_SECONDS = 14 * DAY
MIN_RECORD_SECONDS = DAY / 2  # a shorter record gives no calibration: the floor applies
ARMED_AFTER = 2 * DAY  # out-of-sample record the alerts of ARMED_LATE need before they may notify
ARMED_LATE = ("novelty", "drift")  # alerts whose stand-in under-states what comes next the most
ALERTS = ("anomaly", "novelty", "drift", "regression")
SHARES = {"anomaly": 0.25, "novelty": 0.25, "drift": 0.25, "regression": 0.25}
ANOMALY_FLOOR = 1.0  # the edge of the band
NOVELTY_FLOOR = 1.0  # the distance the history's own windows exceed at the alert's budget
DRIFT_FLOOR = 1.0  # one robust scale of the reference residuals
RECORD_HOURS = int(RECORD_SECONDS // HOUR)
# exceedances closer than the alerts' keep_firing_for are one notification (rules/*.yml)
GAP_HOURS = {"anomaly": 1, "novelty": 1, "drift": 3, "regression": 3}
AGE_CLASSES = 4  # regression ages: the drift window, twice and four times it, the regression window
# the statistics of the record: each alert's, and the regression change of verdicts that lasted at least each age
STATISTICS = (*ALERTS, *(f"regression@{k}" for k in range(1, AGE_CLASSES + 1)))
INFINITE_STATISTIC = 1e6  # what +Inf (a latest sample of +Inf in the bad direction) is recorded as


@dataclass(frozen=True)
class BudgetSettings:
    max_notifications_per_day: float
    direction: str
    drift_window: float  # seconds, already at least the minimum samples at the data's step
    regression_window: float
    minor_pct: float  # the minor severity tier: the regression statistic's floor
    min_abs_deviation: float = 0.0
    min_rel_deviation: float = 0.0
    step: float = 0.0  # seconds between samples (the novelty windows); 0: no novelty reference

    def floor(self, statistic: str) -> float:
        return {"anomaly": ANOMALY_FLOOR, "novelty": NOVELTY_FLOOR, "drift": DRIFT_FLOOR}.get(
            alert_of(statistic), self.minor_pct
        )

    def budget(self, statistic: str) -> float:
        return self.max_notifications_per_day * SHARES[alert_of(statistic)]

    @property
    def regression_ages(self) -> tuple[float, ...]:
        """From which age (seconds since its start) a regression is compared with each age class's threshold."""
        return regression_ages(self.drift_window, self.regression_window)


def alert_of(statistic: str) -> str:
    """The alert a statistic of the record calibrates ("regression@2" -> "regression")."""
    return statistic.partition("@")[0]


def regression_ages(drift_window: float, regression_window: float) -> tuple[float, ...]:
    """The ages from which a regression is also compared with the record of verdicts that lasted as long: the
    regression window, the longest stretch a verdict tests (``regression_window``), is what "sustained" means."""
    return tuple(sorted({min(drift_window * 2**k, regression_window) for k in range(AGE_CLASSES - 1)}
                        | {regression_window}))  # fmt: skip


@dataclass(frozen=True)
class Thresholds:
    """What a series' alerts compare with; exported as perfsentinel_*_threshold gauges."""

    anomaly: Calibration | None
    drift: Calibration | None
    regression: Calibration | None  # in change %, like perfsentinel_regression_change_ratio x 100
    novelty: Calibration | None = None
    # regressions that have lasted at least regression_ages[k] seconds are compared with regression_by_age[k] too
    regression_ages: tuple[float, ...] = ()
    regression_by_age: tuple[Calibration | None, ...] = ()

    @property
    def anomaly_threshold(self) -> float:
        return threshold_of(self.anomaly, ANOMALY_FLOOR)

    @property
    def novelty_threshold(self) -> float:
        return threshold_of(self.novelty, NOVELTY_FLOOR)

    @property
    def drift_threshold(self) -> float:
        return threshold_of(self.drift, DRIFT_FLOOR)

    def regression_threshold_pct(self, minor_pct: float, age: float | None = None) -> float:
        """The change % a regression alert needs; for a regression that has lasted ``age`` seconds, the lowest
        threshold of the age classes it has reached (a class without a calibration yet does not count)."""
        threshold = threshold_of(self.regression, minor_pct)
        if age is None or not math.isfinite(age):
            return threshold
        for start, calibration in zip(self.regression_ages, self.regression_by_age, strict=True):
            if age >= start and calibration is not None:
                threshold = min(threshold, calibration.threshold)
        return threshold

    def by_statistic(self, minor_pct: float, age: float | None = None) -> dict[str, float]:
        return {"anomaly": self.anomaly_threshold, "novelty": self.novelty_threshold,
                "drift": self.drift_threshold, "regression": self.regression_threshold_pct(minor_pct, age)}  # fmt: skip


NO_THRESHOLDS = Thresholds(None, None, None)


@dataclass
class ScoreRecord:
    """Hourly maxima of the statistics a series exported, one sample at a time (the out-of-sample record):
    at most 24 numbers a day per statistic, never the samples. Also the times the statistics crossed the
    thresholds in force (the realised rate, exported beside the thresholds)."""

    started: float | None = None  # time of the first sample recorded
    latest: float | None = None
    maxima: dict[str, dict[int, float]] = field(default_factory=dict)  # statistic -> {clock hour: maximum}
    crossings: dict[str, list[float]] = field(default_factory=dict)  # statistic -> start times of episodes
    above_until: dict[str, float] = field(default_factory=dict)  # statistic -> last time above its threshold

    def add(
        self, time: float, values: Mapping[str, float | None], thresholds: Mapping[str, float] | None = None
    ) -> None:
        """Record one sample's statistics (a sample already recorded, or an older one, is ignored). A missing
        statistic (None, NaN) still marks the hour as observed, at minus infinity. With ``thresholds`` (those
        in force for the sample), a statistic above its threshold after ``GAP_HOURS`` below it is a crossing."""
        if self.latest is not None and time <= self.latest:
            return
        self.started = time if self.started is None else self.started
        self.latest = time
        hour = int(time // HOUR)
        for statistic, value in values.items():
            hours = self.maxima.setdefault(statistic, {})
            number = float(value) if value is not None and not np.isnan(value) else -np.inf
            number = min(number, INFINITE_STATISTIC)  # an infinite score is a very high one, not a missing one
            if number == -np.inf and statistic != alert_of(statistic):
                continue  # kept sparse: its observed hours are its alert's (``blocks``)
            hours[hour] = max(hours.get(hour, -np.inf), number)
            if thresholds is not None and number > thresholds.get(statistic, np.inf):
                self._cross(statistic, time)
        if len(self.maxima.get(ALERTS[0], {})) > RECORD_HOURS + 48:
            self._forget(hour - RECORD_HOURS - 24)

    def _cross(self, statistic: str, time: float) -> None:
        last = self.above_until.get(statistic)
        if last is None or time - last > GAP_HOURS[statistic] * HOUR:  # the alert had resolved
            self.crossings.setdefault(statistic, []).append(time)
        self.above_until[statistic] = time

    def crossings_per_day(self, statistic: str) -> float | None:
        """Threshold crossings per day over the last ``RECORD_SECONDS`` of the record (None before a day)."""
        if self.started is None or self.latest is None or self.latest - self.started < DAY:
            return None
        since = max(self.started, self.latest - RECORD_SECONDS)
        count = sum(1 for t in self.crossings.get(statistic, []) if t >= since)
        return count / ((self.latest - since) / DAY)

    def _forget(self, before: int) -> None:
        for statistic, hours in self.maxima.items():
            self.maxima[statistic] = {h: m for h, m in hours.items() if h >= before}
        for statistic, times in self.crossings.items():
            self.crossings[statistic] = [t for t in times if t >= before * HOUR]

    def copy(self) -> ScoreRecord:
        """An independent copy (what a fit worker calibrates on while the score job goes on adding samples)."""
        maxima = {name: dict(hours) for name, hours in self.maxima.items()}
        crossings = {name: list(times) for name, times in self.crossings.items()}
        return ScoreRecord(self.started, self.latest, maxima, crossings, dict(self.above_until))

    def to_json(self) -> str:
        """The record as JSON (the baseline store keeps it across restarts, ``analyzer.state.store``): per statistic
        its hours and their maxima as text with six significant digits (compared with thresholds, never summed;
        "-inf" for an hour observed without the statistic)."""
        maxima = {}
        for name, hours in self.maxima.items():
            keys = np.fromiter(hours.keys(), dtype=np.int64, count=len(hours))
            values = np.fromiter(hours.values(), dtype=np.float64, count=len(hours))
            order = np.argsort(keys)
            maxima[name] = {"hours": keys[order].tolist(), "values": np.char.mod("%.6g", values[order]).tolist()}
        document = {"started": self.started, "latest": self.latest, "maxima": maxima, "crossings": self.crossings,
                    "above_until": self.above_until}  # fmt: skip
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ScoreRecord:
        """A record written by ``to_json``; raises ValueError (or KeyError, TypeError) on anything else."""
        data = json.loads(text)
        maxima = {name: dict(zip(map(int, kept["hours"]), map(float, kept["values"]), strict=True))
                  for name, kept in data["maxima"].items()}  # fmt: skip
        return cls(
            started=data["started"], latest=data["latest"], maxima=maxima,
            crossings={name: [float(t) for t in times] for name, times in data["crossings"].items()},
            above_until={name: float(t) for name, t in data["above_until"].items()},
        )  # fmt: skip

    def blocks(self, statistic: str, since: float, until: float) -> Blocks:
        """The hours in [since, until) of the record. A statistic of one alert's age class ("regression@2") is
        kept only for hours that had a value; its observed hours are those of its alert."""
        hours = self.maxima.get(statistic, {})
        observed = self.maxima.get(alert_of(statistic), {})
        first, last = math.ceil(since / HOUR), math.floor(until / HOUR)
        kept = sorted(h for h in observed if first <= h < last)
        return Blocks(np.array(kept, dtype=np.int64), np.array([hours.get(h, -np.inf) for h in kept]))


def level_statistics(
    times: np.ndarray, residuals: np.ndarray, expected: np.ndarray, baseline: FittedBaseline, settings: BudgetSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample, the drift score and the change % the drift window ending there shows (as the verdicts
    report them): the rolling median residual, from the reference median, in reference scales and in % of the
    expected level, worse-signed."""
    reference = baseline.reference
    step = float(np.median(np.diff(times))) if times.size > 1 else 0.0
    if reference is None or reference.scale <= 0 or step <= 0:
        nothing = np.full(times.size, np.nan)
        return nothing, nothing
    window = max(int(round(settings.drift_window / step)), 1)
    minimum = max(window // 2, 1)
    moved = pd.Series(residuals).rolling(window, min_periods=minimum).median().to_numpy()
    moved = moved - float(np.median(reference.residuals))
    level = pd.Series(expected).rolling(window, min_periods=minimum).mean().abs().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(level > 0, 100.0 * moved / level, np.nan)
    sign = settings.direction
    return regression.worse_sign(sign, moved / reference.scale), regression.worse_sign(sign, change)


def in_sample_statistics(
    baseline: FittedBaseline, times: np.ndarray, values: np.ndarray, settings: BudgetSettings
) -> dict[str, np.ndarray]:
    """The anomaly and drift statistics the baseline gives to its own history (``times`` ascending)."""
    band = gated_band(baseline.predict(times), settings.min_abs_deviation, settings.min_rel_deviation)
    drift, change = level_statistics(times, values - band.expected, band.expected, baseline, settings)
    with np.errstate(invalid="ignore"):
        moved = np.abs(change) >= settings.minor_pct
    statistics = alert_statistics(anomaly_scores(values, band, settings.direction), drift, change, moved, moved)
    # verdicts are not replayed on the history (too costly), and no cheap stand-in behaves like them: the
    # regression thresholds are calibrated on the out-of-sample record alone; the novelty alert's stand-in is
    # the history windows' own scores (``novelty.learn``)
    return {name: statistics[name] for name in ("anomaly", "drift")}


def alert_statistics(
    anomaly: np.ndarray,
    drift: np.ndarray,
    change: np.ndarray,
    moved: np.ndarray,
    verdict: np.ndarray,
    novelty_score: np.ndarray | None = None,
    age: np.ndarray | None = None,
    ages: tuple[float, ...] = (),
) -> dict[str, np.ndarray]:
    """What each alert compares with its threshold, where its other conditions hold (else minus infinity: an
    observed sample, below any level): the anomaly and novelty scores; the drift score where the level moved by at
    least the minor tier; the change % where there is a regression verdict, and where that verdict had lasted
    (``age``: seconds since the regression's start) at least each of ``ages``."""
    missing = np.full(np.shape(anomaly), np.nan)
    statistics = {
        "anomaly": anomaly,
        "novelty": missing if novelty_score is None else novelty_score,
        "drift": np.where(moved, drift, -np.inf),
        "regression": np.where(verdict, change, -np.inf),
    }
    lasted = np.zeros(np.shape(anomaly)) if age is None else np.nan_to_num(age, nan=0.0)
    for k, start in enumerate(ages, 1):
        statistics[f"regression@{k}"] = np.where(verdict & (lasted >= start), change, -np.inf)
    return {name: np.where(np.isnan(array), -np.inf, array) for name, array in statistics.items()}


def thresholds_for(
    baseline: FittedBaseline,
    times: np.ndarray,
    values: np.ndarray,
    settings: BudgetSettings,
    record: ScoreRecord | None = None,
    novelty_stand_in: Blocks | None = None,
) -> Thresholds:
    """Calibrate the alerts at the end of the history (``times`` ascending): on the out-of-sample ``record``
    where it reaches, on the baseline's scores of the history before that (for the novelty alert, the history
    windows' own scores, ``novelty_stand_in``); the alerts of ``ARMED_LATE`` unarmed while the record holds less
    than ``ARMED_AFTER``."""
    if times.size == 0:
        return NO_THRESHOLDS
    now = float(times[-1])
    end, start = now - settings.regression_window, now - RECORD_SECONDS
    online_from = end
    if record is not None and record.started is not None:
        online_from = min(max(record.started, start), end)
    history = (times >= start) & (times < online_from) & np.isfinite(values)
    statistics = in_sample_statistics(baseline, times[history], values[history], settings) if history.any() else {}
    calibrations = {}
    held = 0.0 if record is None else record.blocks(ALERTS[0], online_from, end).days * DAY  # out of sample
    ages = settings.regression_ages
    names = (*ALERTS, *(f"regression@{k}" for k in range(1, len(ages) + 1)))
    for name in names:
        parts = [hourly_maxima(times[history], statistics[name])] if name in statistics else []
        if name == "novelty" and novelty_stand_in is not None:
            parts.append(_hours_in(novelty_stand_in, start, online_from))
        if record is not None:
            parts.append(record.blocks(name, online_from, end))
        blocks = merge(*parts)
        calibrations[name] = None
        if blocks.days * DAY >= MIN_RECORD_SECONDS:
            calibrations[name] = calibrate(
                blocks, settings.floor(name), GAP_HOURS[alert_of(name)], settings.budget(name)
            )
        if alert_of(name) in ARMED_LATE and held < ARMED_AFTER:
            calibrations[name] = unarmed(calibrations[name], blocks, settings.floor(name), settings.budget(name))
    by_age = tuple(calibrations[f"regression@{k}"] for k in range(1, len(ages) + 1))
    return Thresholds(calibrations["anomaly"], calibrations["drift"], calibrations["regression"],
                      calibrations["novelty"], ages, by_age)  # fmt: skip


def unarmed(calibration: Calibration | None, blocks: Blocks, floor: float, budget: float) -> Calibration:
    """``calibration`` with a threshold of +inf: the alert does not notify until its out-of-sample record holds
    ``ARMED_AFTER``."""
    if calibration is None:
        return Calibration(math.inf, floor, budget, 0.0, blocks.days)
    return replace(calibration, threshold=math.inf)


def _hours_in(blocks: Blocks, since: float, until: float) -> Blocks:
    keep = (blocks.hours * HOUR >= since) & (blocks.hours * HOUR < until)
    return Blocks(blocks.hours[keep], blocks.maxima[keep])


def budget_settings(
    target: object, regression_settings: regression.RegressionSettings, step: float = 0.0
) -> BudgetSettings:
    """The budget settings of a ``config.TargetConfig`` with its step-adjusted ``RegressionSettings``."""
    return BudgetSettings(
        max_notifications_per_day=target.max_notifications_per_day,
        direction=target.direction,
        drift_window=regression_settings.drift_window,
        regression_window=regression_settings.regression_window,
        minor_pct=target.severity.minor,
        min_abs_deviation=target.min_abs_deviation,
        min_rel_deviation=target.min_rel_deviation,
        step=step,
    )


def settings_for(target: object, step: float) -> BudgetSettings:
    return budget_settings(target, regression.settings_for(target, step), step)


def prepare(
    baseline: FittedBaseline,
    times: np.ndarray,
    values: np.ndarray,
    target: object,
    step: float,
    record: ScoreRecord | None = None,
) -> None:
    """Everything a fresh baseline learns from its history before scoring: the reference residuals of the
    regression verdicts, the novelty reference, then the calibrated thresholds (the pipeline and the backtest
    share this). ``times`` is the fit's grid at ``step`` (NaN where missing)."""
    settings = settings_for(target, step)
    attach_reference(baseline, times, values, exclude_recent=settings.regression_window)
    stand_in = learn_novelty(baseline, times, values, settings)
    baseline.thresholds = thresholds_for(baseline, times, values, settings, record, stand_in)


def learn_novelty(
    baseline: FittedBaseline, times: np.ndarray, values: np.ndarray, settings: BudgetSettings
) -> Blocks | None:
    """Set the baseline's novelty reference from its history (None without one); returns the history windows'
    own scores, the novelty record's stand-in."""
    learned = novelty.learn(times, values, settings.step, settings.drift_window, settings.budget("novelty"))
    baseline.novelty = None if learned is None else learned.reference
    return None if learned is None else learned.in_sample


def sample_statistics(
    anomaly_score: float | None,
    drift_score: float | None,
    change_pct: float | None,
    severity: int | None,
    minor_pct: float,
    novelty_score: float | None = None,
    age: float | None = None,
    ages: tuple[float, ...] = (),
) -> dict[str, float]:
    """``alert_statistics`` of one scored sample (the service's result, a backtest row); ``age``: seconds since
    the start of the regression, when there is one."""
    number = lambda value: np.nan if value is None else float(value)  # noqa: E731
    change = number(change_pct)
    statistics = alert_statistics(
        np.array([number(anomaly_score)]), np.array([number(drift_score)]), np.array([change]),
        np.array([abs(change) >= minor_pct]), np.array([(severity or 0) >= 1]), np.array([number(novelty_score)]),
        np.array([number(age)]), ages,
    )  # fmt: skip
    return {name: float(array[0]) for name, array in statistics.items()}


def regression_age(timestamp: float | None, regression_start: float | None) -> float | None:
    """Seconds since the start of a regression (None without one)."""
    if timestamp is None or regression_start is None or not math.isfinite(regression_start):
        return None
    return max(float(timestamp) - float(regression_start), 0.0)


def record_result(
    record: ScoreRecord,
    thresholds: Thresholds | None,
    result: object,
    minor_pct: float,
    lock: AbstractContextManager | None = None,
) -> None:
    """What the service does with each scored result (``result``: an ``analyzer.results.SeriesResult`` after its
    verdict): the regression threshold for its regression's age, a new sample added to the series' record (under
    ``lock``, which guards the record against a refit copying it), and the realised rates of threshold
    crossings."""
    thresholds = thresholds or NO_THRESHOLDS
    age = regression_age(result.timestamp, result.regression_start)
    result.regression_threshold_pct = thresholds.regression_threshold_pct(minor_pct, age)
    latest = record.latest
    if result.timestamp is not None and (latest is None or result.timestamp > latest):  # else add() ignores it
        statistics = sample_statistics(
            result.anomaly_score, result.drift_score, result.change_pct, result.severity, minor_pct,
            result.novelty_score, age, thresholds.regression_ages,
        )  # fmt: skip
        with lock or nullcontext():
            record.add(result.timestamp, statistics, thresholds.by_statistic(minor_pct, age))
    for alert in ALERTS:
        setattr(result, f"{alert}_crossings_per_day", record.crossings_per_day(alert))
