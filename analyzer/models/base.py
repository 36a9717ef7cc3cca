"""The baseline interface every model implements: fit on history, then predict a band for any timestamps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from analyzer.models.calendar import local_seconds

DAY = 86400.0
WEEK = 7 * DAY
WEEKLY_MIN_HISTORY = 3 * WEEK


class FitError(RuntimeError):
    """A model could not be fitted on this history."""


@dataclass(frozen=True)
class FitContext:
    """What a model needs besides the data."""

    step: float
    timezone: str = "UTC"
    seasonality: str = "auto"  # auto | daily | weekly | none
    band_sigmas: float = 4.0


@dataclass(frozen=True)
class Band:
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


@dataclass(frozen=True)
class Seasonality:
    name: str  # weekly | daily | none
    note: str  # why, when it is not what was asked for

    @property
    def period(self) -> float:
        return {"weekly": WEEK, "daily": DAY}.get(self.name, 0.0)


def choose_seasonality(requested: str, span: float) -> Seasonality:
    """Weekly needs >= 3 weeks of history (3 cycles to tell a weekly pattern from noise), daily >= 2 days."""
    if requested == "none":
        return Seasonality("none", "")
    if requested in ("auto", "weekly") and span >= WEEKLY_MIN_HISTORY:
        return Seasonality("weekly", "")
    note = ""
    if requested in ("auto", "weekly"):
        note = f"weekly needs 21d of history, have {span / DAY:.1f}d: daily only"
    if span >= 2 * DAY:
        return Seasonality("daily", note)
    return Seasonality("none", f"daily needs 2d of history, have {span / DAY:.1f}d: level only")


def fill_unobserved(pattern: np.ndarray) -> np.ndarray:
    """Phases without any sample, linear between the nearest observed phases around the cycle."""
    known = np.flatnonzero(np.isfinite(pattern))
    if known.size == len(pattern):
        return pattern
    if known.size == 0:
        return np.zeros_like(pattern)
    size = len(pattern)
    positions = np.concatenate([known - size, known, known + size])
    return np.interp(np.arange(size), positions, np.tile(pattern[known], 3))


def mad_scale(values: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation's robust twin for normal data."""
    return 1.4826 * float(np.median(np.abs(values - np.median(values))))


ROUNDING_SHARE = 1e4 * float(np.finfo(np.float64).eps)  # a MAD below this share of the largest residual is rounding


def robust_scale(residuals: np.ndarray) -> float:
    """1.4826 x MAD, falling back to the standard deviation when more than half the residuals are equal.

    "Equal" allows for rounding: a mostly-zero series (disk writes, error counts) whose expected value comes out
    as +-1e-10 instead of 0 has a MAD of float noise, which made a band of width ~0 and anomaly scores of 10^15.
    """
    finite = residuals[np.isfinite(residuals)]
    if finite.size == 0:
        return 0.0
    mad = mad_scale(finite)
    rounding = ROUNDING_SHARE * float(np.max(np.abs(finite)))
    return mad if mad > rounding else float(np.std(finite))


REFERENCE_SECONDS = 3 * DAY  # training residuals kept for regression verdicts: the last 3 days
REFERENCE_MAX_SAMPLES = 1000


@dataclass(frozen=True)
class Reference:
    """Out-of-sample-style residuals of the baseline on the end of its own history (values minus
    ``expected``), the "before" window of a regression verdict. ``autocorrelation`` is their lag-1
    autocorrelation (computed before thinning), used to deflate sample sizes."""

    residuals: np.ndarray
    scale: float
    autocorrelation: float
    spacing: float = 0.0  # seconds between consecutive kept residuals (median); 0: unknown (stored before it)
    # when thinned: per kept residual, the median of the block of residuals it stands for (``precedented``)
    block_medians: np.ndarray | None = None


class FittedBaseline(ABC):
    """A baseline fitted on history. Subclasses hold only small arrays so they pickle cheaply."""

    model: str
    seasonality: Seasonality
    timezone: str
    band_sigmas: float
    trained_from: float
    trained_to: float
    reference: Reference | None = None  # set by analyzer.detection.reference.attach_reference
    # analyzer.detection.budget.Thresholds, set by budget.prepare after the reference (typed loosely: models sit
    # below detection)
    thresholds: Any = None
    novelty: Any = None  # analyzer.detection.novelty.NoveltyReference, set by budget.prepare
    min_scale: float = 0.0  # the rounding noise of values on a lattice (counts), set by attach_reference

    @abstractmethod
    def expected_and_scale(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected value and robust noise scale at local-time seconds."""

    def predict(self, timestamps: np.ndarray) -> Band:
        local = local_seconds(np.asarray(timestamps, dtype=np.float64), self.timezone)
        expected, scale = self.expected_and_scale(local)
        half = self.band_sigmas * np.maximum(scale, self.min_scale)
        return Band(expected, expected - half, expected + half)


def rounding_noise(values: np.ndarray) -> float:
    """The standard deviation of rounding to the lattice the observed values lie on (quantum / sqrt(12): 0.29
    for counts), or 0 when they lie on none.

    Why: a noise scale below it is not in the data. A count that is mostly 0 (errors a minute, Poisson 0.5)
    against an expected value of 0.07 has residuals that are mostly -0.07: their MAD came out at 0.005, so
    a band of +-0.02 around the expected value made every 1 an anomaly score of 40 (measured on generated low
    counts: 0.78 notifications a day with no change in the data)."""
    distinct = np.unique(values[np.isfinite(values)])
    if distinct.size < 2:
        return 0.0
    quantum = float(np.min(np.diff(distinct)))
    multiples = distinct / quantum
    on_lattice = quantum > 0 and np.allclose(multiples, np.round(multiples), rtol=0.0, atol=1e-6)
    return quantum / np.sqrt(12.0) if on_lattice else 0.0


class BaselineModel(ABC):
    name: str

    @abstractmethod
    def fit(self, timestamps: np.ndarray, values: np.ndarray, context: FitContext) -> FittedBaseline:
        """Fit on a regular grid of history (values NaN where missing). Raises FitError."""
