"""What a fresh fit learns from its history before it is used, computed in the fit worker beside the fit.

After a fit, a series needs the reference residuals of its regression verdicts and its calibrated alert
thresholds (``analyzer.detection.budget.prepare``), its history trend, the figures of its fit quality and its
serialised form for the store. Done in the service process one series after another, this took 17-24 ms per
series, 95% of a refit pass at 10,000 series, and no process pool could go faster than it. Here it runs in the
worker that fitted the series (``FitRequest.after``), for the new fit and for the baseline in use (which a refit
that is not adopted keeps, with its reference and thresholds refreshed on the new history); the service only
decides which of the two to keep and stores it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from analyzer.detection import budget, regression
from analyzer.models.base import FittedBaseline
from analyzer.models.fitting import FitRequest
from analyzer.state.lifecycle import fit_quality
from analyzer.state.store import dump_baseline


@dataclass
class Learning:
    """What the worker needs besides the history: the target's settings, the series' score record (a copy) and
    the baseline in use (None for a new series)."""

    target: object  # analyzer.config.TargetConfig
    record: budget.ScoreRecord
    current: FittedBaseline | None


@dataclass
class Learned:
    trend: regression.Trend | None  # of the new fit
    current: FittedBaseline | None  # a copy of the baseline in use, prepared on this history
    current_trend: regression.Trend | None
    state: bytes  # the new fit, serialised for the store (analyzer.state.store.dump_baseline)
    quality: dict  # the new fit's in-sample figures (analyzer.state.lifecycle.fit_quality)


def prepare(baseline: FittedBaseline, timestamps: np.ndarray, values: np.ndarray, target: object,
            record: budget.ScoreRecord | None) -> regression.Trend | None:  # fmt: skip
    """Reference residuals and calibrated thresholds (in place), and the trend of the history against it."""
    budget.prepare(baseline, timestamps, values, target, target.step, record)
    expected = baseline.predict(timestamps).expected
    level = float(np.nanmedian(expected)) if np.isfinite(expected).any() else 0.0
    return regression.history_trend(timestamps, values - expected, level, target.direction, target.severity)


def learn(baseline: FittedBaseline, request: FitRequest) -> Learned:
    """``FitRequest.after`` of the service's fits (runs in the worker)."""
    learning: Learning = request.learning
    times, values = request.timestamps, request.values
    trend = prepare(baseline, times, values, learning.target, learning.record)
    current, current_trend = None, None
    if learning.current is not None:
        current = copy.copy(learning.current)  # never the object the score job is using (inline fits)
        current_trend = prepare(current, times, values, learning.target, learning.record)
    return Learned(trend, current, current_trend, dump_baseline(baseline), fit_quality(baseline, times, values))
