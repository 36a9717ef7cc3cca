"""Anomaly scores from a baseline band: 1.0 is the edge of the band, for every model and direction."""

from __future__ import annotations

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
