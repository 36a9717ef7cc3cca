"""analyzer.gate.changepoints on generated sequences with known change points (no Prometheus).

The p-value of the scan is checked against a simulation of its own null distribution; detection and naming are
checked on steps, a short regression that was fixed, creeping steps, pure noise, a lone outlier and a periodic
signal (which is not a series of steps).
"""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.gate.changepoints import (
    cusum_statistic,
    find_change_points,
    latest_regression,
    merge,
    scan_p_value,
    seeded_intervals,
)


def _noise(seed: int, n: int = 200, sigma: float = 0.03) -> np.ndarray:
    return 100.0 * (1.0 + sigma * np.random.default_rng(seed).standard_normal(n))


@pytest.mark.parametrize("n", [20, 200])
def test_scan_p_value_matches_the_simulated_null_tail(n):
    """The share of pure-noise sequences whose maximum statistic reaches b is what scan_p_value(b) says."""
    rng = np.random.default_rng(n)
    draws = rng.standard_normal((6000, n))
    maxima = np.array([cusum_statistic(row).max() for row in draws])
    for level in (0.1, 0.01):
        b = float(np.quantile(maxima, 1 - level))
        assert scan_p_value(b, n, 1, n - 1) == pytest.approx(level, rel=0.35)
    assert scan_p_value(40.0, n, 1, n - 1) == 0.0 and scan_p_value(0.1, n, 1, n - 1) > 0.9


def test_seeded_intervals_cover_every_scale_and_the_ends():
    intervals = seeded_intervals(200, 4)
    assert (0, 200) in intervals and min(b - a for a, b in intervals) >= 4
    assert any(b == 200 and b - a <= 8 for a, b in intervals)  # a short interval at the end: the latest builds


@pytest.mark.parametrize("seed", range(5))
def test_a_ten_percent_step_is_named_at_its_build(seed):
    values = _noise(seed, sigma=0.02)
    values[117:] *= 1.10
    points = find_change_points(values)
    assert [p.index for p in points] == [117]
    assert points[0].p_value < 1e-10 and 8 < points[0].change_pct < 12


def test_pure_noise_has_no_change_points_in_almost_every_history():
    found = sum(bool(find_change_points(_noise(seed))) for seed in range(200))
    assert found <= 10  # alpha 0.005 per test, a few tests per history: 5% of histories at most


def test_a_short_regression_that_was_fixed_is_two_change_points():
    """Ten builds 30% slower in the middle of 500: one split of the whole history cannot see it."""
    values = _noise(7, n=500)
    values[166:176] *= 1.3
    assert [p.index for p in find_change_points(values)] == [166, 176]


def test_a_lone_outlier_is_not_a_change_point_but_a_new_level_at_the_end_is():
    values = _noise(8)
    values[90] *= 1.5
    assert find_change_points(values) == []
    values[-1] *= 1.3  # the latest build: the last segment may be one build long
    assert [p.index for p in find_change_points(values)] == [199]
    assert find_change_points(values, min_last=3) == []


def test_a_periodic_signal_is_not_a_staircase():
    """Autocorrelated residuals deflate the test: a cosine with period 20 does not become 20 change points."""
    positions = np.arange(500)
    values = 100 + 10 * np.cos(2 * np.pi * positions / 20) + np.random.default_rng(9).normal(0, 2, 500)
    assert len(find_change_points(values)) <= 2


def test_merge_at_a_stricter_level_keeps_only_the_strong_change():
    values = _noise(10, sigma=0.03)
    values[60:] *= 1.25
    values[150:] *= 1.025
    loose = find_change_points(values, alpha=0.2)
    strict = merge(values, [p.index for p in loose], 1e-6)
    assert 60 in [p.index for p in loose] and [p.index for p in strict] == [60]


def test_latest_regression_adds_creeping_steps_and_sees_a_partial_fix():
    values = _noise(11, sigma=0.01)
    values[50:] *= 1.05
    values[100:] *= 1.05
    values[150:] *= 1.05
    points = find_change_points(values)
    assert [p.index for p in points] == [50, 100, 150]
    creeping = latest_regression(values, points, "lower_is_better")
    assert creeping.start == 50 and creeping.change_pct == pytest.approx(15.8, abs=1.5)
    assert latest_regression(values, points, "higher_is_better") is None  # every step was an improvement
    fixed = values.copy()
    fixed[180:] /= 1.05 * 1.05  # two of the three steps undone
    points = find_change_points(fixed)
    partial = latest_regression(fixed, points, "lower_is_better")
    assert partial.start == 50 and partial.change_pct == pytest.approx(5, abs=1.5)


def test_non_finite_values_are_refused_and_short_histories_have_no_changes():
    with pytest.raises(ValueError):
        find_change_points(np.array([1.0, np.nan, 2.0]))
    assert find_change_points(np.array([1.0, 2.0])) == []
    assert [p.index for p in find_change_points(np.array([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]))] == [4]
