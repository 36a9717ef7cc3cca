"""Series on a regular time grid: labels, timestamps (seconds) and values (NaN where missing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np


def series_key(labels: Mapping[str, str]) -> str:
    """Stable identity of a series within a target: its labels in Prometheus selector form."""
    return "{" + ",".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


@dataclass
class Series:
    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray

    @cached_property
    def key(self) -> str:
        return series_key(self.labels)

    @property
    def step(self) -> float:
        return float(self.timestamps[1] - self.timestamps[0]) if len(self.timestamps) > 1 else 0.0

    def tail(self, since: float) -> Series:
        keep = self.timestamps >= since
        return Series(self.labels, self.timestamps[keep], self.values[keep])

    def before(self, until: float) -> Series:
        keep = self.timestamps < until
        return Series(self.labels, self.timestamps[keep], self.values[keep])


def grid(start: float, end: float, step: float) -> np.ndarray:
    """Timestamps start, start+step, ... <= end, aligned like Prometheus' query_range."""
    count = int(np.floor((end - start) / step + 1e-9)) + 1
    return start + step * np.arange(max(count, 0), dtype=np.float64)
