"""Generated seasonal series with known ground truth, for the demo, the tests and the benchmarks.

A series is level x (1 + daily shape + weekend dip) + noise, optionally with injected sustained steps,
spikes, gaps and slow drifts. Every injection is recorded so detectors can be scored against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DAY = 86400.0


@dataclass
class Injection:
    kind: str  # step | spike | drift | gap
    start: float
    end: float
    size: float  # relative change (0.2 = +20%) for step/spike/drift; 0 for gaps


@dataclass
class SyntheticSeries:
    timestamps: np.ndarray
    values: np.ndarray
    clean: np.ndarray  # the seasonal signal without noise or injections
    injections: list[Injection] = field(default_factory=list)


def seasonal_signal(timestamps: np.ndarray, level: float, daily_amplitude: float, weekend_dip: float) -> np.ndarray:
    hour = (timestamps % DAY) / 3600.0
    weekday = ((timestamps // DAY) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    daily = daily_amplitude * np.sin(2 * np.pi * (hour - 9.0) / 24.0)
    weekend = np.where(weekday >= 5, -weekend_dip, 0.0)
    return level * (1.0 + daily + weekend)


def generate(
    days: float = 35,
    step: float = 300,
    level: float = 0.2,
    daily_amplitude: float = 0.3,
    weekend_dip: float = 0.15,
    noise: float = 0.05,
    seed: int = 0,
    end: float | None = None,
) -> SyntheticSeries:
    """A clean seasonal series ending at ``end`` (default: a fixed Monday, so runs are reproducible)."""
    rng = np.random.default_rng(seed)
    end = end if end is not None else 1_767_571_200.0  # 2026-01-05 00:00 UTC
    count = int(days * DAY / step)
    timestamps = end - step * np.arange(count, 0, -1, dtype=np.float64)
    clean = seasonal_signal(timestamps, level, daily_amplitude, weekend_dip)
    values = clean * (1.0 + rng.normal(0.0, noise, count))
    return SyntheticSeries(timestamps, values, clean)


def inject_step(series: SyntheticSeries, start: float, size: float, end: float | None = None) -> None:
    """Multiply the series by (1 + size) from ``start`` (to ``end`` if given): a sustained level change."""
    end = end if end is not None else float(series.timestamps[-1]) + 1
    window = (series.timestamps >= start) & (series.timestamps < end)
    series.values[window] *= 1.0 + size
    series.injections.append(Injection("step", start, end, size))


def inject_spike(series: SyntheticSeries, at: float, size: float, width: float = 0.0) -> None:
    window = (series.timestamps >= at) & (series.timestamps <= at + width)
    series.values[window] *= 1.0 + size
    series.injections.append(Injection("spike", at, at + width, size))


def inject_drift(series: SyntheticSeries, start: float, size: float) -> None:
    """A linear ramp from 0 at ``start`` to ``size`` at the end of the series."""
    after = series.timestamps >= start
    span = float(series.timestamps[-1]) - start
    series.values[after] *= 1.0 + size * (series.timestamps[after] - start) / span
    series.injections.append(Injection("drift", start, float(series.timestamps[-1]), size))


def inject_gap(series: SyntheticSeries, start: float, end: float) -> None:
    series.values[(series.timestamps >= start) & (series.timestamps < end)] = np.nan
    series.injections.append(Injection("gap", start, end, 0.0))


def missing_in_holes(size: int, ratio: float, mean_hole: float, rng: np.random.Generator) -> np.ndarray:
    """A mask with ``ratio`` of ``size`` samples missing, in holes of exponentially distributed length (in
    samples): a sparse series, as a low-traffic quantile or an irregular reporter leaves it."""
    missing = np.zeros(size, dtype=bool)
    while missing.mean() < ratio:
        start = rng.integers(0, size)
        missing[start : start + max(1, int(rng.exponential(mean_hole)))] = True
    return missing
