"""After a fit, the reference residuals, calibrated thresholds, trend, fit quality and stored form of a series are
computed in the fit worker (analyzer.service.learning), not one series after another in the service."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.detection import budget
from analyzer.models.fitting import FitPool
from analyzer.service.pipeline import Analyzer
from analyzer.state.store import BaselineStore
from analyzer.synthetic import generate
from tests.generated import GeneratedReader, one_target_config

END = 1_767_571_200.0


def generated(count: int) -> GeneratedReader:
    """Generated series (the fit path is under test here, not reading)."""
    return GeneratedReader([generate(days=10, step=300, level=0.2 + 0.01 * i, seed=i, end=END) for i in range(count)])


def config(state_dir: str | None = None):
    return one_target_config("10d", state_dir)


def test_the_service_process_prepares_no_fit_itself(monkeypatch):
    """With worker processes, budget.prepare never runs in the service process (made to fail there), and every
    series still gets its reference residuals, thresholds and trend."""

    def fail(*args, **kwargs):
        raise AssertionError("budget.prepare ran in the service process")

    monkeypatch.setattr(budget, "prepare", fail)
    pool = FitPool(2)
    try:
        analyzer = Analyzer(config(), generated(6), pool=pool, clock=lambda: END)
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
        analyzer = Analyzer(config(str(tmp_path)), generated(2), pool=pool, clock=lambda: END)
        analyzer.refit(END)
    finally:
        pool.close()
    stored = BaselineStore.in_dir(tmp_path).active("lat")
    assert len(stored) == 2
    for item in stored:
        memory = analyzer.states["lat"][item.key].baseline
        np.testing.assert_array_equal(item.baseline.reference.residuals, memory.reference.residuals)
        assert item.baseline.thresholds == memory.thresholds
