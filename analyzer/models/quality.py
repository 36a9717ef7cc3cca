"""Checks a history before any model sees it. A failed check is a valid answer (insufficient_data), with a
reason a person can act on."""

from __future__ import annotations

import numpy as np

TOO_SHORT = "too_short"
TOO_MANY_GAPS = "too_many_gaps"
FLAT = "flat"


def insufficiency(values: np.ndarray, step: float, min_history: float, max_gap_ratio: float) -> str | None:
    """The reason this history cannot carry a baseline, or None when it can.

    The span runs from the first observed sample to the end of the window, so a series that appeared
    yesterday counts one day of history, and a series that stopped reporting counts its silence as gaps.
    """
    observed = np.flatnonzero(np.isfinite(values))
    if observed.size < 2 or (len(values) - observed[0]) * step < min_history:
        return TOO_SHORT
    gap_ratio = 1.0 - observed.size / (len(values) - observed[0])
    if gap_ratio > max_gap_ratio:
        return TOO_MANY_GAPS
    present = values[observed]
    if np.ptp(present) <= 1e-12 * max(1.0, float(np.abs(present).max())):
        return FLAT
    return None


def covered_seconds(values: np.ndarray, step: float) -> float:
    """History a series has on its grid: from its first sample (finite or infinite) to the end, in seconds."""
    observed = np.flatnonzero(~np.isnan(values))
    return float((len(values) - observed[0]) * step) if observed.size else 0.0
