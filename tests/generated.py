"""A reader that serves generated series on the requested grid, for tests of the service's passes where reading
from Prometheus is not what is under test, and the one-target config they run with."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from analyzer.config import build_config
from analyzer.series import Series, grid


class GeneratedReader:
    """Serves ``series`` as ``{service="s<i>"}``, interpolated on each request's grid (NaN outside their span), and
    counts the finite points it returned and the ranges asked for."""

    cancelled = threading.Event()

    def __init__(self, series: Sequence[Series]) -> None:
        self.series = list(series)
        self.points_read = 0
        self.ranges: list[tuple[float, float]] = []

    def read_matrix(self, query, start, end, step, sink, **limits) -> int:
        times = grid(start, end, step)
        self.ranges.append((start, end))
        for i, data in enumerate(self.series):
            values = np.interp(times, data.timestamps, data.values, np.nan, np.nan)
            sink({"service": f"s{i}"}, times, values)
            self.points_read += int(np.isfinite(values).sum())
        return len(self.series)

    def query(self, query, at):
        return []


def one_target_config(history: str, state_dir: str | None = None):
    """A latency target of the profile model over ``history``; a Prometheus that is never asked."""
    raw = {
        "prometheus": {"url": "http://127.0.0.1:1"},
        "targets": [{"name": "lat", "query": "q", "kind": "latency", "history": history, "model": "profile"}],
    }
    return build_config({**raw, **({"state_dir": state_dir} if state_dir else {})}, env={})  # fmt: skip
