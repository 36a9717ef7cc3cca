"""analyzer.detection.stats on generated samples with known shifts (fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.detection.stats import (
    TESTS,
    InsufficientData,
    SeverityThresholds,
    benjamini_hochberg,
    compare_windows,
    hedges_g,
    lag1_autocorrelation,
    severity_for,
)

LEVEL = 100.0


def windows(shift: float, seed: int = 1, n_reference: int = 2000, n_recent: int = 36, noise: float = 3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, noise, n_reference), rng.normal(shift, noise, n_recent)


@pytest.mark.parametrize("test", TESTS)
def test_a_ten_percent_rise_is_significant_and_worse_for_latency(test: str) -> None:
    reference, recent = windows(10.0)
    result = compare_windows(reference, recent, LEVEL, "lower_is_better", test)
    assert result.p_value < 1e-6
    assert result.worse and result.effect_size > 2
    assert result.ci_low < 10.0 < result.ci_high or abs(result.change_pct - 10.0) < 1.5
    assert abs(result.change_pct - 10.0) < 1.5


@pytest.mark.parametrize("test", TESTS)
def test_a_rise_is_an_improvement_for_throughput(test: str) -> None:
    reference, recent = windows(10.0)
    result = compare_windows(reference, recent, LEVEL, "higher_is_better", test)
    assert result.p_value > 0.5
    assert not result.worse and result.change_pct < -8 and result.effect_size < 0


@pytest.mark.parametrize("test", TESTS)
def test_a_fall_is_worse_for_throughput(test: str) -> None:
    reference, recent = windows(-10.0)
    result = compare_windows(reference, recent, LEVEL, "higher_is_better", test)
    assert result.p_value < 1e-6 and result.change_pct > 8 and result.ci_low > 0


@pytest.mark.parametrize("shift", [-10.0, 10.0])
def test_both_flags_either_way_and_keeps_the_raw_sign(shift: float) -> None:
    reference, recent = windows(shift)
    result = compare_windows(reference, recent, LEVEL, "both")
    assert result.p_value < 1e-6 and result.change_pct > 8
    assert math.copysign(1, result.shift) == math.copysign(1, shift)


@pytest.mark.parametrize("test", TESTS)
def test_no_shift_gives_uniform_p_values(test: str) -> None:
    p = np.array([compare_windows(*windows(0.0, seed=s, n_reference=500), LEVEL, "lower_is_better", test).p_value
                  for s in range(200)])  # fmt: skip
    assert 0.01 <= (p < 0.05).mean() <= 0.12
    assert 0.35 < np.median(p) < 0.65


def test_the_confidence_interval_covers_the_true_change() -> None:
    covered = 0
    for seed in range(100):
        result = compare_windows(*windows(5.0, seed=seed), LEVEL, "lower_is_better", "welch")
        covered += result.ci_low <= 5.0 <= result.ci_high
    assert 88 <= covered <= 100
    covered = sum(
        (r := compare_windows(*windows(5.0, seed=s), LEVEL, "lower_is_better")).ci_low <= 5.0 <= r.ci_high
        for s in range(100)
    )
    assert 88 <= covered <= 100


def test_lag1_autocorrelation_is_not_hidden_by_a_few_bursts() -> None:
    """1% of the samples replaced by bursts of 1,000x: Pearson's estimate falls to ~0, the rank estimate stays."""
    rng = np.random.default_rng(4)
    values = np.zeros(10000)
    for i in range(1, values.size):
        values[i] = 0.7 * values[i - 1] + rng.normal()
    values[rng.choice(values.size, 100, replace=False)] = 1000.0
    assert lag1_autocorrelation(values) == pytest.approx(0.7, abs=0.05)


def test_autocorrelation_makes_p_values_larger_and_intervals_wider() -> None:
    reference, recent = windows(2.0, n_recent=24)
    plain = compare_windows(reference, recent, LEVEL, "lower_is_better")
    adjusted = compare_windows(reference, recent, LEVEL, "lower_is_better", autocorrelation=0.6)
    assert adjusted.p_value > plain.p_value
    assert adjusted.ci_high - adjusted.ci_low > plain.ci_high - plain.ci_low
    assert adjusted.effective_n_recent == pytest.approx(24 * 0.4 / 1.6)


def test_lag1_autocorrelation_of_an_ar1_process() -> None:
    rng = np.random.default_rng(3)
    values = np.zeros(20000)
    for i in range(1, values.size):
        values[i] = 0.7 * values[i - 1] + rng.normal()
    assert lag1_autocorrelation(values) == pytest.approx(0.7, abs=0.03)
    assert lag1_autocorrelation(rng.normal(size=5000)) < 0.05


def test_hedges_g_of_one_sd_shift() -> None:
    rng = np.random.default_rng(4)
    assert hedges_g(rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)) == pytest.approx(1.0, abs=0.05)


def test_zero_expected_level_gives_nan_change_but_a_p_value() -> None:
    result = compare_windows(*windows(10.0), 0.0, "lower_is_better")
    assert math.isnan(result.change_pct) and result.p_value < 1e-6 and result.worse


def test_too_few_samples_and_bad_arguments() -> None:
    with pytest.raises(InsufficientData, match="recent window has 3"):
        compare_windows(np.ones(100), [1.0, 2.0, np.nan, 3.0], LEVEL)
    with pytest.raises(ValueError, match="unknown test"):
        compare_windows(*windows(0.0), LEVEL, test="anova")
    with pytest.raises(ValueError, match="unknown direction"):
        compare_windows(*windows(0.0), LEVEL, direction="up")


def test_benjamini_hochberg_matches_the_textbook_example() -> None:
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    q = benjamini_hochberg(p)
    # sorted p 0.005 0.01 0.03 0.04 (m=4): 0.02 0.02 0.04 0.04
    assert q[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert math.isnan(q[4])
    assert benjamini_hochberg([]).size == 0
    assert (benjamini_hochberg([0.9, 0.99]) <= 1).all()


@pytest.mark.parametrize(
    ("change", "tier"),
    [(-50.0, "none"), (0.0, "none"), (4.999, "none"), (5.0, "minor"), (14.99, "minor"), (15.0, "significant"),
     (29.99, "significant"), (30.0, "critical"), (math.inf, "critical"), (math.nan, "none")],
)  # fmt: skip
def test_severity_tier_boundaries(change: float, tier: str) -> None:
    assert severity_for(change) == tier


def test_custom_thresholds() -> None:
    thresholds = SeverityThresholds(minor=1, significant=2, critical=3)
    assert [severity_for(x, thresholds) for x in (0.5, 1, 2.5, 3)] == ["none", "minor", "significant", "critical"]
    with pytest.raises(ValueError):
        SeverityThresholds(minor=10, significant=5)


def test_the_fast_mann_whitney_p_value_is_scipys_asymptotic_one():
    """analyzer.detection.stats.mann_whitney_p replaces scipy's call in the score job; it must agree exactly,
    with and without ties, on all three alternatives (the verdicts' figures depend on it)."""
    from scipy import stats as st

    from analyzer.detection.stats import mann_whitney_p

    rng = np.random.default_rng(11)
    for trial in range(300):
        x = rng.normal(rng.normal(0, 0.5), 1, rng.integers(3, 80))
        y = rng.normal(0, 1, rng.integers(3, 900))
        if trial % 3 == 0:
            x, y = np.round(x, 1), np.round(y, 1)
        if trial % 50 == 0:
            x, y = np.zeros_like(x), np.zeros_like(y)
        for alternative in ("greater", "less", "two-sided"):
            expected = st.mannwhitneyu(x, y, alternative=alternative, method="asymptotic").pvalue
            assert mann_whitney_p(x, y, alternative) == pytest.approx(expected, rel=1e-12, abs=1e-300)
