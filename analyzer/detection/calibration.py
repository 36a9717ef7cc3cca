"""Notification budget arithmetic: the threshold a statistic may exceed ``budget`` times a day, from the hourly
maxima of the series' own record of that statistic.

A fixed threshold (anomaly score > 1) pages as often as a series leaves its band, which on a bursty series is
many times a day. Instead:

1. The record is kept as one maximum per clock hour (``Blocks``): bounded memory, and enough to count
   notifications, because an alert keeps firing for at least an hour after its condition ends
   (``keep_firing_for``). The episodes above a level are the runs of hours above it; runs less than ``gap``
   hours apart are one episode, as they would be one notification.
2. When the record shows at most ``budget`` episodes a day above the statistic's floor, the threshold is the
   floor (a quiet series keeps the sensitivity of the band edge).
3. Otherwise a base level is chosen where about one episode a day remains above it (never below the floor,
   so a statistic that is above its floor most of the time still splits into episodes), the excesses of those
   episodes' peaks over the base are fitted with a generalised Pareto tail (shape and scale from their
   quartiles, robust to a few extreme peaks), and the threshold is the level that tail exceeds ``budget``
   times a day. This is peaks-over-threshold from extreme value theory, as in SPOT (Siffer et al., KDD 2017),
   and in the spirit of Numenta's anomaly likelihood, which turns a score into a tail probability of the
   series' own recent scores.

Pure functions on arrays; ``analyzer.detection.budget`` keeps the records and calls them at each refit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HOUR = 3600.0
DAY = 86400.0
BASE_EPISODES_PER_DAY = 1.0  # the tail is fitted to the episodes above the level exceeded about this often
DEFAULT_SHAPE = 0.5  # GPD shape when there are too few peaks to estimate it (a heavy-ish tail: conservative)
MIN_PEAKS_FOR_SHAPE = 3
MAX_SHAPE = 1.0


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


def base_level(blocks: Blocks, floor: float, gap_hours: int, per_day: float) -> float:
    """The lowest level at or above ``floor`` with at most ``per_day`` episodes a day above it (the candidates
    are the record's own hourly maxima)."""
    allowed = per_day * blocks.days
    if episode_peaks(blocks, floor, gap_hours).size <= allowed:
        return floor
    candidates = np.unique(blocks.maxima[blocks.maxima > floor])
    low, high = 0, candidates.size - 1  # the largest candidate has no episode above it
    while low < high:  # episodes above a level fall (almost always) as it rises: bisect on the sorted maxima
        middle = (low + high) // 2
        if episode_peaks(blocks, float(candidates[middle]), gap_hours).size <= allowed:
            high = middle
        else:
            low = middle + 1
    return float(candidates[low])


def tail_threshold(peaks: np.ndarray, days: float, budget: float) -> float:
    """The level a Pareto tail fitted to ``peaks`` (episode maxima, all > 0, seen over ``days``) exceeds
    ``budget`` times a day: Hill's estimate of the tail index above the smallest peak and Weissman's
    extrapolation from it, ``smallest * (rate / budget) ** shape``. For a light tail the shape comes out small
    and the level grows with the logarithm of ``rate / budget``, as an exponential tail's does."""
    smallest = float(peaks.min())
    shape = DEFAULT_SHAPE
    if peaks.size >= MIN_PEAKS_FOR_SHAPE:
        shape = min(float(np.mean(np.log(peaks / smallest))) * peaks.size / (peaks.size - 1), MAX_SHAPE)
    return smallest * (peaks.size / days / budget) ** shape


def calibrate(blocks: Blocks, floor: float, gap_hours: int, budget: float) -> Calibration:
    """The threshold that the record in ``blocks`` says is exceeded ``budget`` times a day (at least
    ``floor``, which must be > 0)."""
    days = blocks.days
    floor_rate = episode_peaks(blocks, floor, gap_hours).size / days if days > 0 else 0.0
    if floor_rate <= budget:
        return Calibration(floor, floor, budget, floor_rate, days)
    base = base_level(blocks, floor, gap_hours, max(BASE_EPISODES_PER_DAY, budget))
    peaks = episode_peaks(blocks, base, gap_hours)
    if peaks.size == 0:  # the base is the record's maximum
        return Calibration(base, floor, budget, floor_rate, days)
    if peaks.size / days <= budget:
        return Calibration(base, floor, budget, floor_rate, days)
    return Calibration(max(floor, tail_threshold(peaks, days, budget)), floor, budget, floor_rate, days)


def threshold_of(calibration: Calibration | None, floor: float) -> float:
    """The calibrated threshold, or ``floor`` when there is no calibration yet."""
    return floor if calibration is None else calibration.threshold
