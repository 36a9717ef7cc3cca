"""After a fit, the reference residuals, calibrated thresholds, trend, fit quality and stored form of a series are
computed in the fit worker (analyzer.service.learning), not one series after another in the service."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from analyzer.config import build_config
from analyzer.detection import budget
from analyzer.models.fitting import FitPool
from analyzer.series import grid
from analyzer.service.pipeline import Analyzer
from analyzer.state.store import BaselineStore
from analyzer.synthetic import generate

END = 1_767_571_200.0


class Generated:
    """A reader serving generated series (the fit path is under test here, not reading)."""

    cancelled = threading.Event()
    points_read = 0

    def __init__(self, count: int) -> None:
        self.series = [generate(days=10, step=300, level=0.2 + 0.01 * i, seed=i, end=END) for i in range(count)]

    def read_matrix(self, query, start, end, step, sink, **limits) -> int:
        times = grid(start, end, step)
        for i, data in enumerate(self.series):
            sink({"service": f"s{i}"}, times, np.interp(times, data.timestamps, data.values, np.nan, np.nan))
        return len(self.series)

    def query(self, query, at):
        return []


def config(state_dir: str | None = None):
    raw = {
        "prometheus": {"url": "http://127.0.0.1:1"},
        "targets": [{"name": "lat", "query": "q", "kind": "latency", "history": "10d", "model": "profile"}],
    }
    return build_config({**raw, **({"state_dir": state_dir} if state_dir else {})}, env={})  # fmt: skip


def test_the_service_process_prepares_no_fit_itself(monkeypatch):
    """With worker processes, budget.prepare never runs in the service process (made to fail there), and every
    series still gets its reference residuals, thresholds and trend."""

    def fail(*args, **kwargs):
        raise AssertionError("budget.prepare ran in the service process")

    monkeypatch.setattr(budget, "prepare", fail)
    pool = FitPool(2)
    try:
        analyzer = Analyzer(config(), Generated(6), pool=pool, clock=lambda: END)
        analyzer.refit(END)
    finally:
        pool.close()
    states = analyzer.states["lat"].values()
    assert len(states) == 6
    assert all(s.baseline.reference is not None and s.baseline.thresholds is not None for s in states)
    assert all(s.trend is not None for s in states)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stored_baseline_keeps_its_reference_and_thresholds(tmp_path, workers):
    """It used to be stored before they were attached: after a restart, verdicts had no reference and
    thresholds fell to their floors until the series' next refit."""
    pool = FitPool(workers)
    try:
        analyzer = Analyzer(config(str(tmp_path)), Generated(2), pool=pool, clock=lambda: END)
        analyzer.refit(END)
    finally:
        pool.close()
    stored = BaselineStore.in_dir(tmp_path).active("lat")
    assert len(stored) == 2
    for item in stored:
        memory = analyzer.states["lat"][item.key].baseline
        np.testing.assert_array_equal(item.baseline.reference.residuals, memory.reference.residuals)
        assert item.baseline.thresholds == memory.thresholds
