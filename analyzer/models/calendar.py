"""Wall-clock time in the configured timezone, so daily and weekly patterns follow DST shifts."""

from __future__ import annotations

import numpy as np
import pandas as pd


def local_seconds(timestamps: np.ndarray, timezone: str) -> np.ndarray:
    """Unix seconds shifted by the UTC offset in force at each instant (wall-clock seconds since 1970).

    1970-01-01 was a Thursday, so ``(local + 3 * 86400) // 86400 % 7`` is the weekday with Monday = 0.
    """
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if timezone == "UTC" or timestamps.size == 0:
        return timestamps.copy()
    whole = np.floor(timestamps)
    instants = pd.to_datetime(whole.astype(np.int64), unit="s", utc=True)
    wall = instants.tz_convert(timezone).tz_localize(None)
    wall_seconds = wall.to_numpy().astype("datetime64[s]").astype(np.int64)
    offsets = (wall_seconds - whole.astype(np.int64)).astype(np.float64)
    return timestamps + offsets


def phase(local: np.ndarray, period: float, origin: float = 3 * 86400.0) -> np.ndarray:
    """Position inside the period in seconds; weekly periods start on Monday 00:00 local time."""
    return np.mod(local + origin, period)
