"""When did a level change start: the single best split of a window of residuals.

Method: for every split position k (each side at least ``min_size`` samples) compute the two-sample t-statistic
of the mean shift between ``values[:k]`` and ``values[k:]`` (O(n) with cumulative sums), take the split with the
largest statistic in the target's bad direction, and test it with Welch's t-test. This is the mean-shift case of
E-divisive as Apache Otava runs it (split, then a t-test instead of permutations), restricted to one split
because the window is short (hours) and only the latest change matters for a verdict. It is deterministic (no
permutations, ties go to the earliest split) and costs microseconds for a few hundred samples, so it can run
on every score. PELT would also find several changes, but needs a penalty tuned to the noise and gives no
p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special


@dataclass(frozen=True)
class ChangePoint:
    index: int  # position in the input of the first sample of the new segment
    t_statistic: float  # worse-signed (absolute for direction both)
    p_value: float  # Welch's t-test of after vs before, one-sided toward worse (two-sided for both)
    before_mean: float
    after_mean: float


def split_statistics(values: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(split positions, t-statistics of mean(after) - mean(before) with a pooled variance)."""
    n = values.size
    positions = np.arange(min_size, n - min_size + 1)
    if positions.size == 0:
        return positions, np.empty(0)
    csum = np.concatenate(([0.0], np.cumsum(values)))
    csq = np.concatenate(([0.0], np.cumsum(values * values)))
    left_n, right_n = positions.astype(np.float64), (n - positions).astype(np.float64)
    left_mean = csum[positions] / left_n
    right_mean = (csum[n] - csum[positions]) / right_n
    within = (csq[positions] - left_n * left_mean**2) + (csq[n] - csq[positions] - right_n * right_mean**2)
    variance = np.maximum(within, 0.0) / max(n - 2, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (right_mean - left_mean) / np.sqrt(variance * (1.0 / left_n + 1.0 / right_n))
    return positions, np.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)


def welch_p_value(before: np.ndarray, after: np.ndarray, direction: str) -> float:
    """Welch's t-test of after vs before, one-sided toward worse (two-sided for both). Computed from the
    statistic with scipy.special, because ``scipy.stats.ttest_ind``'s argument handling costs ~0.5 ms a call."""
    v1, v2 = before.var(ddof=1) / before.size, after.var(ddof=1) / after.size
    se = math.sqrt(v1 + v2)
    if se == 0:
        return 1.0
    t = float(after.mean() - before.mean()) / se
    df = (v1 + v2) ** 2 / (v1**2 / (before.size - 1) + v2**2 / (after.size - 1))
    if direction == "lower_is_better":
        return float(special.stdtr(df, -t))
    if direction == "higher_is_better":
        return float(special.stdtr(df, t))
    return float(2.0 * special.stdtr(df, -abs(t)))


def best_split(values: np.ndarray, direction: str = "both", min_size: int = 3) -> ChangePoint | None:
    """The most likely start of a change in the bad direction, or None when the window is too short or flat.

    NaN samples are skipped; ``index`` refers to the input positions, NaN included.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(values))
    x = values[finite]
    positions, t = split_statistics(x, min_size)
    if positions.size == 0:
        return None
    signed = {"lower_is_better": t, "higher_is_better": -t}.get(direction, np.abs(t))
    best = int(np.argmax(signed))
    k = int(positions[best])
    before, after = x[:k], x[k:]
    if np.ptp(x) == 0:
        return None
    p_value = welch_p_value(before, after, direction)
    return ChangePoint(
        index=int(finite[k]),
        t_statistic=float(signed[best]),
        p_value=1.0 if math.isnan(p_value) else p_value,
        before_mean=float(before.mean()),
        after_mean=float(after.mean()),
    )
