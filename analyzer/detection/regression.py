"""Regression verdicts: drift score, significance, persistence, severity tier, start time, trend and cause.

One evaluation has two steps, so that false alarms can be controlled across all series of a run:

1. ``assess`` (per series): residuals of the recent window (observed minus baseline) against the residuals of
   the baseline on the end of its own history (``models.base.Reference``). The recent window starts at the
   change point found inside ``regression_window`` (``analyzer.detection.changepoint``) when that split is significant,
   else it is the last ``drift_window``. Gives the raw p-value, change % with CI, effect size, drift score,
   and whether a stretch of the reference as long as the recent window already held a level as bad
   (``precedented``: bursts that come and go are not a regression).
2. ``decide`` (per series, after Benjamini-Hochberg over the run's p-values): a candidate tier is the severity
   of the change % when the adjusted p-value is <= ``alpha``, the change is worse and unprecedented; it becomes
   the verdict after ``persistence`` consecutive evaluations (and clears after as many without). A large change
   without enough evidence yet is ``potential`` (severity 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats as st

from analyzer.detection.changepoint import ChangePoint, best_split
from analyzer.detection.stats import (
    DEFAULT_TEST,
    SEVERITY_LEVELS,
    Comparison,
    InsufficientData,
    SeverityThresholds,
    compare_windows,
    severity_for,
)
from analyzer.models.base import Reference

NONE = "none"
POTENTIAL = "potential"
INSUFFICIENT_DATA = "insufficient_data"
VERDICTS = (NONE, POTENTIAL, "minor", "significant", "critical", INSUFFICIENT_DATA)
TRENDS = ("improving", "stable", "degrading", "volatile")

NO_REFERENCE = "no_reference_residuals"
FEW_RECENT = "too_few_recent_samples"
PRECEDENTED = "reached_before"  # a stretch of the reference as long as the recent window was as bad
SPLIT_P_VALUE = 0.01  # a change point inside the window is used when its own t-test is below this
MIN_SEGMENT = 3  # samples on each side of a change point
DAY = 86400.0


@dataclass(frozen=True)
class RegressionSettings:
    direction: str = "both"
    drift_window: float = 3600.0
    regression_window: float = 6 * 3600.0
    test: str = DEFAULT_TEST
    persistence: int = 3
    alpha: float = 0.0001  # false discovery rate across the series of one run (see docs: measured)
    thresholds: SeverityThresholds = SeverityThresholds()
    event_lookback: float = 6 * 3600.0  # how long before the start an event still counts as a cause
    split_correction: bool = False  # see ``selection_factor``


MIN_DRIFT_SAMPLES = 6  # the drift window holds at least this many samples at the data's step
MIN_REGRESSION_SAMPLES = 24  # and the regression window this many (an hourly series: 6 h and 24 h)


def step_windows(drift_window: float, regression_window: float, step: float) -> tuple[float, float]:
    """The drift and regression windows at a sampling ``step``: the configured durations, lengthened to the
    minimum sample counts, so a verdict at 1 h steps has as many samples to test as at 5 min."""
    return max(drift_window, MIN_DRIFT_SAMPLES * step), max(regression_window, MIN_REGRESSION_SAMPLES * step)


def settings_for(target: object, step: float | None = None) -> RegressionSettings:
    """The settings of a ``config.TargetConfig`` (duck-typed: regression does not import the config) for data
    at ``step`` seconds (default: the target's step)."""
    drift_window, regression_window = step_windows(
        target.drift_window, target.regression_window, target.step if step is None else step
    )
    return RegressionSettings(
        direction=target.direction,
        drift_window=drift_window,
        regression_window=regression_window,
        test=target.test,
        persistence=target.persistence,
        alpha=target.fdr,
        thresholds=target.severity,
        split_correction=target.split_correction,
    )


@dataclass(frozen=True)
class Evidence:
    """What one evaluation of one series found, before the run-wide correction."""

    drift_score: float | None = None
    comparison: Comparison | None = None
    change_start: float | None = None  # timestamp of the first sample after a significant split
    expected_level: float | None = None
    reason: str = ""  # set when there is no comparison (insufficient data)
    precedented: bool = False  # see ``precedented``; only looked for when the raw p-value could confirm


@dataclass
class VerdictState:
    """Per-series memory between evaluations (kept in the pipeline's SeriesState)."""

    streak: int = 0  # consecutive evaluations with a confirmed candidate
    clear_streak: int = 0  # consecutive evaluations without one, while a verdict stands
    verdict: str = NONE  # the standing tier: none | minor | significant | critical
    start: float | None = None
    warmed: bool = False  # the evaluations before the first one were replayed from the read window
    sample_time: float | None = None  # the latest sample the last evaluation saw (``decide_new``)
    last: Verdict | None = None


@dataclass(frozen=True)
class Verdict:
    verdict: str  # one of VERDICTS
    severity: int  # 0 none/potential/insufficient, 1 minor, 2 significant, 3 critical
    drift_score: float | None = None
    change_pct: float | None = None
    change_ci_low: float | None = None
    change_ci_high: float | None = None
    p_value: float | None = None  # raw, of the configured test
    q_value: float | None = None  # Benjamini-Hochberg adjusted over the run
    effect_size: float | None = None
    confidence: float | None = None  # 1 - q_value
    start: float | None = None
    reason: str = ""


@dataclass(frozen=True)
class Trend:
    trend: str  # one of TRENDS
    slope_pct_per_day: float  # worse-signed change of the level per day, % of the level
    p_value: float
    projected_change_pct: float  # over the next day, worse-signed


def worse_sign(direction: str, value: float | np.ndarray) -> float | np.ndarray:
    """``value`` (a shift, or an array of them) signed so that positive is worse (absolute for ``both``)."""
    if direction == "lower_is_better":
        return value
    if direction == "higher_is_better":
        return -value
    return abs(value)


def drift_score(recent: np.ndarray, reference: Reference, direction: str) -> float | None:
    """How far the median residual of the recent window has moved from the reference median, in units of the
    reference's robust scale; worse-signed (absolute for ``both``)."""
    recent = recent[np.isfinite(recent)]
    if recent.size == 0 or reference.scale <= 0:
        return None
    moved = (float(np.median(recent)) - float(np.median(reference.residuals))) / reference.scale
    return worse_sign(direction, moved)


def assess(
    timestamps: np.ndarray,
    residuals: np.ndarray,
    expected: np.ndarray,
    reference: Reference | None,
    settings: RegressionSettings,
) -> Evidence:
    """Evidence from the residuals of the regression window (timestamps ascending, NaN where missing)."""
    if reference is None or reference.residuals.size < 10:
        return Evidence(reason=NO_REFERENCE)
    end = timestamps[-1] if timestamps.size else 0.0
    in_window = timestamps > end - settings.regression_window
    timestamps, residuals, expected = timestamps[in_window], residuals[in_window], expected[in_window]
    in_drift = timestamps > end - settings.drift_window
    drift = drift_score(residuals[in_drift], reference, settings.direction)
    recent, start, correction = residuals[in_drift], None, 1.0
    recent_from = float(timestamps[in_drift][0]) if in_drift.any() else end
    split = best_split(residuals, settings.direction, MIN_SEGMENT)
    if split is not None and split.p_value < SPLIT_P_VALUE and _leaves_normal(split, reference):
        start = float(timestamps[split.index])
        after = residuals[split.index :]
        segment_samples = int(np.isfinite(after).sum())
        if segment_samples >= 2 * MIN_SEGMENT:
            recent, recent_from = after, start
            if settings.split_correction:
                correction = selection_factor(int(np.isfinite(residuals).sum()), segment_samples)
    level = float(np.nanmean(expected[-recent.size :])) if np.isfinite(expected).any() else math.nan
    try:
        comparison = compare_windows(
            reference.residuals, recent, level, settings.direction, settings.test,
            autocorrelation=reference.autocorrelation,
        )  # fmt: skip
    except InsufficientData as exc:
        return Evidence(drift_score=drift, reason=f"{FEW_RECENT}: {exc}")
    if correction > 1.0:
        comparison = replace(comparison, p_value=min(1.0, comparison.p_value * correction))
    could_confirm = comparison.p_value <= settings.alpha and comparison.worse  # the adjusted p is never smaller
    held = could_confirm and precedented(reference, recent, end - recent_from, settings)
    return Evidence(drift, comparison, start, level, precedented=held)


def selection_factor(window_samples: int, segment_samples: int) -> float:
    """What the p-value of a segment the split chose is multiplied by (``split_correction``): 1 + log2(window /
    segment), a Bonferroni factor over the dyadic scales the split chooses among (1 for the whole window, about
    4.6 for 6 samples of 72).

    Why: the split picks the segment that departs most, so a noise excursion tested on its own segment looks
    more significant than it is. Measured on the accuracy bench: false verdicts 17 -> 5 in 3,148 series-days,
    10% steps within 1 h 745 -> 710 of 800 (README, Accuracy). Off by default, as it costs recall."""
    return 1.0 + math.log2(max(window_samples / max(segment_samples, 1), 1.0))


def precedented(reference: Reference, recent: np.ndarray, duration: float, settings: RegressionSettings) -> bool:
    """Whether a stretch of the reference as long as the recent window (``duration`` seconds) had a median
    residual at least as far from the reference median, in the bad direction, as the recent window has
    (``both``: in either direction, as the drift score and the two-sided test measure it).

    Such a level came and went within the last days without being a regression: a cluster of bursts, an hour
    the baseline does not model. The parametric test cannot see that, as it treats the reference as noise
    around one level. The reference's own last ``regression_window`` is left out: a stretch there may be the
    start of the change under test (the backtest refits without masking regressed periods; the service masks
    them). Too short a reference for two stretches: no precedent. A thinned reference is searched in the
    medians of the blocks its kept residuals stand for (``Reference.block_medians``), not in point samples,
    which are noisier than the recent window's samples at the full resolution."""
    recent = recent[np.isfinite(recent)]
    spacing = reference.spacing
    length = round(duration / spacing) + 1 if spacing > 0 else recent.size
    # rounded up: at least the whole window is left out, also when the spacing of the kept residuals (thinned to
    # REFERENCE_MAX_SAMPLES) does not divide it
    left_out = math.ceil(settings.regression_window / spacing - 1e-9) if spacing > 0 else 0
    source = reference.residuals if reference.block_medians is None else reference.block_medians
    usable = source[: max(source.size - left_out, 0)]
    if recent.size == 0 or usable.size < 2 * length:
        return False
    normal = float(np.median(reference.residuals))
    stretches = np.median(sliding_window_view(usable, length), axis=1) - normal
    moved = float(np.median(recent)) - normal
    return bool(worse_sign(settings.direction, stretches).max() >= worse_sign(settings.direction, moved))


def _leaves_normal(split: ChangePoint, reference: Reference) -> bool:
    """The split is a departure from the baseline's normal level (its "before" segment is closer to the
    reference median than to the "after" segment), not a wiggle inside an already changed level."""
    normal = float(np.median(reference.residuals))
    return abs(split.before_mean - normal) < 0.5 * abs(split.after_mean - split.before_mean)


def decide(evidence: Evidence, q_value: float | None, state: VerdictState, settings: RegressionSettings) -> Verdict:
    """Apply the adjusted p-value, the severity tiers and persistence; updates ``state``."""
    comparison = evidence.comparison
    if comparison is None:
        state.streak = 0
        return Verdict(INSUFFICIENT_DATA, 0, evidence.drift_score, reason=evidence.reason)
    q = comparison.p_value if q_value is None or math.isnan(q_value) else q_value
    tier = severity_for(comparison.change_pct, settings.thresholds)
    confirmed = tier if q <= settings.alpha and comparison.worse and not evidence.precedented else NONE
    _advance(state, confirmed, evidence, settings)
    verdict = state.verdict
    if verdict == NONE and tier != NONE:
        verdict = POTENTIAL
    reason = PRECEDENTED if evidence.precedented and verdict == POTENTIAL else ""
    return Verdict(
        verdict=verdict,
        severity=SEVERITY_LEVELS.get(state.verdict, 0),
        drift_score=evidence.drift_score,
        change_pct=comparison.change_pct,
        change_ci_low=comparison.ci_low,
        change_ci_high=comparison.ci_high,
        p_value=comparison.p_value,
        q_value=q,
        effect_size=comparison.effect_size,
        confidence=1.0 - q,
        start=state.start,
        reason=reason,
    )


def decide_new(
    evidence: Evidence, q_value: float | None, state: VerdictState, settings: RegressionSettings, sample_time: float
) -> Verdict:
    """``decide``, once per new sample: an evaluation that sees the same latest sample as the last one (the
    service scores every minute, an hourly series changes once an hour) repeats the last verdict, so
    ``persistence`` counts samples at every step, as the backtest does."""
    if state.last is not None and state.sample_time == sample_time:
        return state.last
    state.last, state.sample_time = decide(evidence, q_value, state, settings), sample_time
    return state.last


def _advance(state: VerdictState, confirmed: str, evidence: Evidence, settings: RegressionSettings) -> None:
    if confirmed == NONE:
        state.streak, state.clear_streak = 0, state.clear_streak + 1
        if state.verdict != NONE and state.clear_streak >= settings.persistence:
            state.verdict, state.start = NONE, None
        return
    state.streak, state.clear_streak = state.streak + 1, 0
    if state.verdict == NONE and state.streak < settings.persistence:
        return
    if state.verdict == NONE or state.start is None:
        state.start = evidence.change_start
    elif evidence.change_start is not None and state.start > evidence.change_start - settings.regression_window:
        state.start = evidence.change_start  # still inside the window: a later estimate has more data after it
    state.verdict = confirmed


def run_q_values(p_values: Sequence[float | None]) -> np.ndarray:
    """Benjamini-Hochberg over one run (None for series without a comparison)."""
    from analyzer.detection.stats import benjamini_hochberg

    return benjamini_hochberg([math.nan if p is None else p for p in p_values])


def history_trend(
    timestamps: np.ndarray, residuals: np.ndarray, level: float, direction: str, thresholds: SeverityThresholds
) -> Trend | None:
    """Trend of the daily medians of the residuals over the history (at least 3 days): slope by least squares
    with its p-value; ``volatile`` when the daily medians scatter around the line by more than the ``minor``
    threshold of the level, ``degrading``/``improving`` when the slope is significant (p < 0.05)."""
    finite = np.isfinite(residuals)
    if finite.sum() < 10 or not level:
        return None
    days = np.floor((timestamps[finite] - timestamps[finite][0]) / DAY)
    unique = np.unique(days)
    if unique.size < 3:
        return None
    medians = np.array([np.median(residuals[finite][days == d]) for d in unique])
    fit = st.linregress(unique, medians)
    slope_pct = worse_sign(direction, 100.0 * float(fit.slope) / abs(level))
    scatter_pct = 100.0 * float(np.std(medians - (fit.intercept + fit.slope * unique), ddof=2)) / abs(level)
    p_value = float(fit.pvalue) if math.isfinite(fit.pvalue) else 1.0
    if scatter_pct > thresholds.minor:
        label = "volatile"
    elif p_value < 0.05:
        label = "degrading" if slope_pct > 0 else "improving"
    else:
        label = "stable"
    return Trend(label, slope_pct, p_value, slope_pct)


def nearest_event(events: Sequence[tuple[float, str]], start: float | None, lookback: float) -> str | None:
    """The latest event at or before ``start`` (plus one minute of clock slack) within ``lookback``."""
    if start is None:
        return None
    candidates = [(t, name) for t, name in events if start - lookback <= t <= start + 60.0]
    return max(candidates)[1] if candidates else None


__all__ = [
    "Evidence",
    "RegressionSettings",
    "Trend",
    "Verdict",
    "VerdictState",
    "assess",
    "decide",
    "drift_score",
    "history_trend",
    "nearest_event",
    "run_q_values",
]


def replay(
    times: np.ndarray,
    residuals: np.ndarray,
    expected: np.ndarray,
    rows: np.ndarray,
    reference: Reference | None,
    settings: RegressionSettings,
    state: VerdictState,
) -> dict[int, Verdict]:
    """Evaluate ``rows`` (indices into ascending ``times``) one after another, as a run of one series each
    (so the adjusted p-value is the raw one); the window of each row is the rows before it within
    ``regression_window``. Used by the backtest and the accuracy bench."""
    verdicts: dict[int, Verdict] = {}
    for row in rows:
        first = int(np.searchsorted(times, times[row] - settings.regression_window, side="right"))
        window = slice(first, row + 1)
        evidence = assess(times[window], residuals[window], expected[window], reference, settings)
        verdicts[int(row)] = decide(evidence, None, state, settings)
    return verdicts


def warm_up(
    timestamps: np.ndarray,
    residuals: np.ndarray,
    expected: np.ndarray,
    reference: Reference | None,
    settings: RegressionSettings,
    state: VerdictState,
) -> None:
    """A series seen for the first time (service start, ``once``) has no persistence history: replay the
    ``persistence - 1`` evaluations before the last sample from the window already read, so one run can give
    a verdict on a change that has lasted long enough."""
    if state.warmed:
        return
    state.warmed = True
    replay(timestamps, residuals, expected, warm_up_rows(residuals, settings), reference, settings, state)


def warm_up_rows(residuals: np.ndarray, settings: RegressionSettings) -> np.ndarray:
    """The rows ``warm_up`` replays: the ``persistence - 1`` observed samples before the last one."""
    observed = np.flatnonzero(np.isfinite(residuals))[:-1]
    return observed[-(settings.persistence - 1) :] if settings.persistence > 1 else observed[:0]
