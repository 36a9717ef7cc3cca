"""Notification budget arithmetic: the threshold a statistic may exceed ``budget`` times a day, from the hourly
maxima of the series' own record of that statistic.

A fixed threshold (anomaly score > 1) pages as often as a series leaves its band, which on a bursty series is
many times a day. Instead:

1. The record is kept as one maximum per clock hour (``Blocks``): bounded memory, and enough to count
   notifications, because an alert keeps firing for at least an hour after its condition ends
   (``keep_firing_for``). The episodes above a level are the runs of hours above it; runs less than ``gap``
   hours apart are one episode, as they would be one notification.
2. The record's **rate curve**: the episodes above each level it holds. It is not monotone: a statistic that
   stays above a level for hours at a time shows few, long episodes there and more, shorter ones a little
   higher, where the long stretches split. What a threshold at a level would notify is what the record shows
   there or anywhere above it, so the curve is read as its envelope from above (``rate_envelope``: the most
   episodes at that level or higher).
3. When the envelope allows ``budget`` episodes a day at the statistic's floor, the threshold is the floor (a
   quiet series keeps the sensitivity of the band edge).
4. Otherwise the threshold is extrapolated from the peaks of the episodes above the level exceeded about once a
   day (the peaks-over-threshold of extreme value theory, as in SPOT, Siffer et al., KDD 2017): they are taken
   as a shifted exponential (the generalised Pareto tail of shape 0) starting at the smallest of them, with
   their mean excess over it as its scale, and the threshold is where that tail is exceeded ``budget`` times a
   day. The mean excess grows with the heaviness of the tail, so over the 10- to 40-fold extrapolation a budget
   needs this is within a few per cent of a fitted Pareto tail for shapes up to about 0.3 and more conservative
   for heavier ones, while a light or bounded tail (the same spike every day) is not extrapolated as if it were
   heavy: Hill's estimator, used before, read a mixture of small and large peaks as a heavy tail and set
   thresholds several times above anything the series had done.
5. **The promise**: the threshold is never below the lowest level at which the record itself shows at most
   ``budget`` x days episodes (rounded down; ``record_level``): on the series' own record, the alert would
   have notified no more often than its budget. For a 14-day record and a budget under 1/14 a day that is
   above the record's largest peak.

Pure functions on arrays; ``analyzer.detection.budget`` keeps the records and calls them at each refit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOUR = 3600.0
DAY = 86400.0
BASE_EPISODES_PER_DAY = 1.0  # the tail is fitted to the episodes above the level exceeded about this often


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold and what it was derived from (exported beside the score)."""

    threshold: float
    floor: float
    budget: float  # episodes per day the threshold was set for
    episodes_per_day: float  # episodes above the floor per day in the record
    record_days: float


@dataclass(frozen=True)
class Blocks:
    """Hourly maxima of a statistic: ``hours`` (clock hour numbers, ascending, unique) and their ``maxima``."""

    hours: np.ndarray
    maxima: np.ndarray

    @property
    def days(self) -> float:
        return self.hours.size / 24.0


def hourly_maxima(times: np.ndarray, values: np.ndarray) -> Blocks:
    """The maximum of the ``values`` in each clock hour that has one (NaN is no value; -inf is a value below
    any level, for an observed sample without the statistic)."""
    finite = ~np.isnan(values)
    if not finite.any():
        return Blocks(np.empty(0, dtype=np.int64), np.empty(0))
    hours = np.floor(times[finite] / HOUR).astype(np.int64)
    order = np.argsort(hours, kind="stable")
    hours, values = hours[order], values[finite][order]
    starts = np.flatnonzero(np.r_[True, np.diff(hours) > 0])
    return Blocks(hours[starts], np.maximum.reduceat(values, starts))


def merge(*parts: Blocks) -> Blocks:
    """Blocks of several records (an hour in more than one keeps its largest maximum)."""
    hours = np.concatenate([p.hours for p in parts]) if parts else np.empty(0, dtype=np.int64)
    maxima = np.concatenate([p.maxima for p in parts]) if parts else np.empty(0)
    if hours.size == 0:
        return Blocks(hours.astype(np.int64), maxima)
    order = np.lexsort((maxima, hours))
    hours, maxima = hours[order], maxima[order]
    last = np.r_[np.diff(hours) > 0, True]
    return Blocks(hours[last], maxima[last])


def episode_peaks(blocks: Blocks, level: float, gap_hours: int) -> np.ndarray:
    """The peak of each episode above ``level``: hours above it, merged when fewer than ``gap_hours`` hours
    separate them (an hour without a sample separates like one below the level)."""
    above = blocks.maxima > level
    if not above.any():
        return np.empty(0)
    hours, maxima = blocks.hours[above], blocks.maxima[above]
    starts = np.flatnonzero(np.r_[True, np.diff(hours) > gap_hours])
    return np.maximum.reduceat(maxima, starts)


def episode_counts(blocks: Blocks, levels: np.ndarray, gap_hours: int) -> np.ndarray:
    """The number of episodes above each of ``levels`` (``episode_peaks(...).size`` for all levels at once)."""
    levels = np.asarray(levels, dtype=np.float64)
    if blocks.hours.size == 0 or levels.size == 0:
        return np.zeros(levels.size, dtype=np.int64)
    above = blocks.maxima[None, :] > levels[:, None]
    hours = blocks.hours.astype(np.float64)
    # the latest hour above the level before each hour: an episode starts where it is more than gap hours back
    latest = np.maximum.accumulate(np.where(above, hours[None, :], -np.inf), axis=1)
    before = np.concatenate((np.full((levels.size, 1), -np.inf), latest[:, :-1]), axis=1)
    return (above & (hours[None, :] - before > gap_hours)).sum(axis=1)


def rate_envelope(blocks: Blocks, floor: float, gap_hours: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The levels a threshold can take (the floor and the record's maxima above it, ascending), the episodes
    above each, and their envelope from above: the most episodes at that level or any higher one."""
    finite = blocks.maxima[np.isfinite(blocks.maxima)]
    levels = np.unique(np.r_[floor, finite[finite > floor]])
    counts = episode_counts(blocks, levels, gap_hours)
    return levels, counts, np.maximum.accumulate(counts[::-1])[::-1]


def lowest_level(levels: np.ndarray, envelope: np.ndarray, allowed: float) -> float:
    """The lowest of ``levels`` with at most ``allowed`` episodes at it and above (the largest level has none)."""
    return float(levels[int(np.argmax(envelope <= allowed))])


def base_level(blocks: Blocks, floor: float, gap_hours: int, per_day: float) -> float:
    """The level the tail is fitted above: the lowest at or above ``floor`` with at most ``per_day`` episodes a
    day at it and above, raised to where those episodes are most numerous (long stretches split)."""
    levels, counts, envelope = rate_envelope(blocks, floor, gap_hours)
    start = int(np.argmax(envelope <= per_day * blocks.days))
    return float(levels[start + int(np.argmax(counts[start:] == envelope[start]))])


def tail_threshold(peaks: np.ndarray, days: float, budget: float) -> float:
    """The level an exponential tail fitted to the ``peaks`` (two or more, seen over ``days``) is exceeded
    ``budget`` times a day. The tail starts at the smallest peak (the maximum-likelihood location of a shifted
    exponential) with the peaks' mean excess over it as its scale (unbiased: divided by n - 1), so a gap between
    the base level and the peaks above it is not read as spread: ``smallest + scale x log(rate / budget)``."""
    smallest = float(peaks.min())
    scale = float(np.sum(peaks - smallest)) / (peaks.size - 1)
    return smallest + scale * np.log(peaks.size / days / budget)


def record_level(blocks: Blocks, floor: float, gap_hours: int, budget: float) -> float:
    """The lowest level (at least ``floor``) at which the record shows at most ``budget`` x days episodes."""
    levels, _, envelope = rate_envelope(blocks, floor, gap_hours)
    return lowest_level(levels, envelope, np.floor(budget * blocks.days + 1e-9))


def calibrate(blocks: Blocks, floor: float, gap_hours: int, budget: float) -> Calibration:
    """The threshold that the record in ``blocks`` says is exceeded ``budget`` times a day (at least ``floor``,
    which must be > 0), never one the record itself crosses more often than that."""
    days = blocks.days
    levels, counts, envelope = rate_envelope(blocks, floor, gap_hours)
    floor_rate = counts[0] / days if days > 0 else 0.0
    allowed = np.floor(budget * days + 1e-9)
    if envelope[0] <= allowed:
        return Calibration(floor, floor, budget, floor_rate, days)
    promise = lowest_level(levels, envelope, allowed)
    base = base_level(blocks, floor, gap_hours, max(BASE_EPISODES_PER_DAY, budget))
    peaks = episode_peaks(blocks, base, gap_hours)
    threshold = promise
    if peaks.size >= 2 and peaks.size / days > budget:
        threshold = max(threshold, tail_threshold(peaks, days, budget))
    return Calibration(max(floor, threshold), floor, budget, floor_rate, days)


def threshold_of(calibration: Calibration | None, floor: float) -> float:
    """The calibrated threshold, or ``floor`` when there is no calibration yet."""
    return floor if calibration is None else calibration.threshold
