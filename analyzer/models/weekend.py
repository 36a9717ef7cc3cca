"""Does the weekend have its own daily shape? For histories too short for a weekly period (< 21 days).

Prometheus keeps 15 days by default, so with a default Prometheus no series reaches a weekly period, and a
daily-only baseline forecasts a weekend day as a weekday: a series with a weekend dip left its band every
weekend. STL and the profile model both ask this module whether the weekend differs, each with the daily
shapes it builds its own way from the weekend samples (``weekend_groups``).

The rule: two weekends with ``MIN_WEEKEND_DAYS`` of observed samples each are needed, and the latest weekend,
the weekends before it and all of them together must each differ from the weekday shape by more than
``WEEKEND_MIN_EFFECT`` noise scales (RMS over the day), with the latest and the earlier ones agreeing (their
difference smaller than the effect). With one weekend, a change of shape that started on a Saturday would be
taken for a weekend effect and the Monday forecast from the old shape.
"""

from __future__ import annotations

import numpy as np

from analyzer.models.base import DAY, WEEK, Seasonality, robust_scale
from analyzer.models.calendar import phase

WEEKEND_START = 5 * DAY  # Saturday 00:00 in the weekly phase (weeks start on Monday)
MIN_WEEKEND_DAYS = 0.75  # the split needs two weekends with 18 hours of observed samples each
WEEKEND_MIN_EFFECT = 0.5  # RMS of weekend minus weekday shape, in noise scales, for the split to be used


def on_weekend(local: np.ndarray) -> np.ndarray:
    """Saturday and Sunday, local time."""
    return phase(local, WEEK) >= WEEKEND_START


def weekend_groups(local: np.ndarray, observed: np.ndarray, step: float) -> tuple[np.ndarray, ...] | None:
    """Masks of the latest weekend, the weekends before it and all weekends (observed samples only); None
    without two weekends with ``MIN_WEEKEND_DAYS`` of observed samples."""
    weekend = on_weekend(local) & observed
    week = (local + 3 * DAY) // WEEK  # weeks start on Monday, as in ``phase``
    weeks, counts = np.unique(week[weekend], return_counts=True)
    whole = weeks[counts * step >= MIN_WEEKEND_DAYS * DAY]
    if whole.size < 2:
        return None
    return weekend & (week == whole[-1]), weekend & (week < whole[-1]), weekend


def weekend_difference(shapes: tuple[np.ndarray, ...], weekday_shape: np.ndarray, noise: float) -> np.ndarray | None:
    """The weekend's daily shape minus the weekday one, or None when the weekend does not differ (module doc).
    ``shapes``: the daily shapes of the latest weekend, of the weekends before it and of all weekends."""
    latest, earlier, overall = (shape - weekday_shape for shape in shapes)
    if min(rms(latest), rms(earlier)) <= WEEKEND_MIN_EFFECT * noise or rms(latest - earlier) > rms(overall):
        return None
    return overall


def with_weekend_note(season: Seasonality) -> Seasonality:
    """A daily seasonality that says in its note (the series' ``note``) that the weekend has its own shape."""
    return Seasonality("daily", season.note.replace("daily only", "daily, with its own weekend shape"))


def spread_scale(residuals: np.ndarray) -> float:
    """The larger of the MAD and the interquartile range, each scaled to a normal standard deviation (they agree
    on normal noise). The MAD alone sees only the larger mode of a two-level series (NAB's
    ``ec2_cpu_utilization_c6585a`` alternates between 0.067 and 0.134: a MAD of 0.005), against which any
    difference of medians between weekend and weekdays looked like an effect."""
    residuals = residuals[np.isfinite(residuals)]
    if residuals.size == 0:
        return 0.0
    quartiles = np.percentile(residuals, [25.0, 75.0])
    return max(robust_scale(residuals), float(quartiles[1] - quartiles[0]) / 1.349)


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2)))
