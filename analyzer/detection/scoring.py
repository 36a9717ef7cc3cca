"""Anomaly scores from a baseline band: 1.0 is the edge of the band, for every model and direction."""

from __future__ import annotations

import math

import numpy as np

from analyzer.models.base import Band


def gated_band(band: Band, min_abs_deviation: float, min_rel_deviation: float) -> Band:
    """Widen the band so that it is never narrower than the configured minimum deviations.

    Gating the band (instead of zeroing small scores) keeps 1.0 at the band's edge: a deviation smaller than
    ``min_abs_deviation`` or ``min_rel_deviation`` x expected can never score above 1.
    """
    floor = np.maximum(min_abs_deviation, min_rel_deviation * np.abs(band.expected))
    up = np.maximum(band.upper - band.expected, floor)
    down = np.maximum(band.expected - band.lower, floor)
    return Band(band.expected, band.expected - down, band.expected + up)


def anomaly_scores(values: np.ndarray, band: Band, direction: str) -> np.ndarray:
    """Deviation from the expected value in units of the band's half width, counted only in the bad
    direction (``lower_is_better``: above; ``higher_is_better``: below; ``both``: either). NaN stays NaN; +Inf or
    -Inf scores +Inf in the bad direction (``histogram_quantile`` beyond the last bucket) and 0 in the good one."""
    deviation = values - band.expected
    with np.errstate(divide="ignore", invalid="ignore"):
        above = np.where(deviation > 0, deviation / (band.upper - band.expected), 0.0)
        below = np.where(deviation < 0, -deviation / (band.expected - band.lower), 0.0)
    above = np.where(np.isfinite(above), above, np.where(deviation > 0, np.inf, 0.0))
    below = np.where(np.isfinite(below), below, np.where(deviation < 0, np.inf, 0.0))
    if direction == "lower_is_better":
        scores = above
    elif direction == "higher_is_better":
        scores = below
    else:
        scores = np.maximum(above, below)
    return np.where(np.isnan(values), np.nan, scores)


def anomaly_score(value: float, expected: float, lower: float, upper: float, direction: str) -> float:
    """``anomaly_scores`` of one sample, in plain Python: the score job scores one latest sample per series, and
    numpy's per-call overhead (``errstate``, ``where``) made that 0.1 ms of its 0.25 ms per series. The same
    result, tested against the array version."""
    if math.isnan(value):
        return math.nan
    deviation = value - expected
    above = _part_of(deviation, upper - expected) if deviation > 0 else 0.0
    below = _part_of(-deviation, expected - lower) if deviation < 0 else 0.0
    if direction == "lower_is_better":
        return above
    if direction == "higher_is_better":
        return below
    return max(above, below)


def _part_of(part: float, half: float) -> float:
    """``part`` (> 0) in units of ``half``; an undefined or infinite ratio is +Inf, as in ``anomaly_scores``."""
    if half == 0:
        return math.inf
    ratio = part / half
    return ratio if math.isfinite(ratio) else math.inf
