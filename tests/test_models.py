"""Baselines on generated data with known ground truth: accuracy, band calibration, misses and false alarms."""

import numpy as np
import pytest

from analyzer.detection.reference import attach_reference
from analyzer.detection.scoring import anomaly_scores, gated_band
from analyzer.models import FitContext, choose_seasonality, get_model
from analyzer.models.base import fill_unobserved, robust_scale, rounding_noise
from analyzer.models.calendar import local_seconds
from analyzer.models.stl import phase_average, running_median, smooth_phase
from analyzer.synthetic import DAY, generate, inject_spike, inject_step, missing_in_holes

MODELS = ["stl", "mstl", "profile"]
MIDWEEK = 1_767_571_200.0 + 2.5 * DAY  # Wednesday noon, away from the synthetic weekend edges


def fit_and_predict(series, model: str, horizon_days: float = 1.0, **context):
    split = series.timestamps[-1] - horizon_days * DAY
    train = series.timestamps <= split
    baseline = get_model(model).fit(series.timestamps[train], series.values[train], FitContext(step=300, **context))
    future = ~train
    return baseline, baseline.predict(series.timestamps[future]), future


@pytest.mark.parametrize("model", MODELS)
def test_expected_value_tracks_the_seasonal_signal(model):
    series = generate(days=28, seed=3, noise=0.05)
    _, band, future = fit_and_predict(series, model)
    error = np.abs(band.expected - series.clean[future]) / series.clean[future]
    assert np.mean(error) < 0.02  # noise is 5%; the baseline must see through it


@pytest.mark.parametrize("model", MODELS)
def test_no_false_alarms_on_clean_seasonal_data(model):
    flagged = 0
    for seed in range(5):
        series = generate(days=28, seed=seed)
        _, band, future = fit_and_predict(series, model)
        flagged += np.sum(anomaly_scores(series.values[future], band, "both") > 1)
    assert flagged <= 4  # of 5 x 288 points: <= 0.3% at the default 4-sigma band


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("direction", ["lower_is_better", "both"])
def test_step_up_after_the_fit_is_flagged(model, direction):
    series = generate(days=28, seed=7)
    inject_step(series, series.timestamps[-1] - DAY + 1, 0.5)  # 10 noise sigmas
    _, band, future = fit_and_predict(series, model)
    scores = anomaly_scores(series.values[future], band, direction)
    assert np.mean(scores > 1) > 0.95


@pytest.mark.parametrize("model", MODELS)
def test_improvement_is_not_flagged_for_one_sided_direction(model):
    series = generate(days=28, seed=8)
    inject_step(series, series.timestamps[-1] - DAY + 1, -0.5)
    _, band, future = fit_and_predict(series, model)
    assert np.all(anomaly_scores(series.values[future], band, "lower_is_better") == 0)
    assert np.mean(anomaly_scores(series.values[future], band, "higher_is_better") > 1) > 0.95


@pytest.mark.parametrize("model", MODELS)
def test_spikes_in_history_do_not_distort_the_baseline(model):
    clean = generate(days=28, seed=4)
    spiky = generate(days=28, seed=4)
    rng = np.random.default_rng(1)
    for at in rng.choice(spiky.timestamps[:-400], 30, replace=False):
        inject_spike(spiky, at, 3.0)
    _, band_clean, future = fit_and_predict(clean, model)
    _, band_spiky, _ = fit_and_predict(spiky, model)
    shift = np.abs(band_spiky.expected - band_clean.expected) / band_clean.expected
    assert np.median(shift) < 0.01


@pytest.mark.parametrize("model", MODELS)
def test_bursts_of_a_heavy_tailed_series_do_not_become_the_baseline(model):
    """Network and disk byte counters: twelve bursts of 10,000x the level, 30 minutes to 2 hours each. Measured
    before the fix: STL's least-squares trend followed them and the forecast was off by 600% to 10^7 %."""
    errors = []
    for seed in range(3):
        series = generate(days=29, seed=seed, noise=0.05)
        train = series.timestamps <= series.timestamps[-1] - DAY
        values = series.values[train].copy()
        rng = np.random.default_rng(seed)
        for start in rng.choice(values.size - 40, 12, replace=False):
            values[start : start + rng.integers(6, 25)] *= 10_000.0
        baseline = get_model(model).fit(series.timestamps[train], values, FitContext(step=300))
        expected = baseline.predict(series.timestamps[~train]).expected
        errors.append(np.median(np.abs(expected - series.clean[~train]) / series.clean[~train]))
    assert max(errors) < 0.02


@pytest.mark.parametrize("model", MODELS)
def test_a_fresh_regression_in_the_history_does_not_become_the_baseline(model):
    """Refitting 6 hours into a +50% regression must still expect the old level."""
    series = generate(days=28, seed=5, end=MIDWEEK)
    end = series.timestamps[-1]
    inject_step(series, end - 6 * 3600, 0.5)
    baseline = get_model(model).fit(series.timestamps, series.values, FitContext(step=300))
    band = baseline.predict(series.timestamps[-12:])
    assert np.mean(np.abs(band.expected - series.clean[-12:]) / series.clean[-12:]) < 0.05
    assert np.all(anomaly_scores(series.values[-12:], band, "lower_is_better") > 1)


def test_gaps_are_tolerated():
    series = generate(days=21, seed=2)
    series.values[1000:1500] = np.nan
    series.values[::7] = np.nan
    for model in MODELS:
        _, band, future = fit_and_predict(series, model)
        assert np.all(np.isfinite(band.expected))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("ratio", "mean_hole"), [(0.8, 1), (0.7, 24), (0.5, 72)])  # holes of 5 min, 2 h, 6 h
def test_forecast_of_a_sparse_series_comes_from_its_observed_samples(model, ratio, mean_hole):
    """Low-traffic quantiles and irregular reporters leave most of the grid empty. Measured before the fix
    (phases never observed took the overall median; gaps were bridged by straight lines through the daily
    swing): median STL error 7-14% of the level in these cases; after: 2.6-3.4%."""
    errors = []
    for seed in range(3):
        series = generate(days=29, seed=seed, noise=0.05)
        train = series.timestamps <= series.timestamps[-1] - DAY
        missing = missing_in_holes(int(train.sum()), ratio, mean_hole, np.random.default_rng(seed))
        values = np.where(missing, np.nan, series.values[train])
        baseline = get_model(model).fit(series.timestamps[train], values, FitContext(step=300))
        expected = baseline.predict(series.timestamps[~train]).expected
        errors.append(np.sqrt(np.mean(((expected - series.clean[~train]) / series.clean[~train]) ** 2)))
    assert np.median(errors) < 0.04


def test_a_phase_seen_once_does_not_carry_its_spike_into_the_forecast():
    """85% missing: most phases of the daily shape are observed once or twice in 4 days, and a spike seen once
    was that phase's "median". Such phases now take the median pooled with their neighbours' samples."""
    worst = []
    for seed in range(8):
        series = generate(days=10, seed=seed, noise=0.03, weekend_dip=0.0)
        rng = np.random.default_rng(seed)
        values = np.where(rng.random(series.values.size) < 0.85, np.nan, series.values)
        spikes = np.isfinite(values) & (rng.random(values.size) < 0.03)
        values[spikes] *= 5.0
        train = series.timestamps <= series.timestamps[-1] - DAY
        baseline = get_model("stl").fit(series.timestamps[train], values[train], FitContext(step=300))
        expected = baseline.predict(series.timestamps[~train]).expected
        worst.append(np.max(np.abs(expected - series.clean[~train]) / series.clean[~train]))
    assert np.median(worst) < 0.8  # measured 0.45; before, 2.0 (the spikes, at 5x the level, in the forecast)


def test_unobserved_phases_are_filled_from_their_neighbours_around_the_cycle():
    pattern = np.array([np.nan, 2.0, 4.0, np.nan, np.nan, 10.0, np.nan])
    np.testing.assert_allclose(fill_unobserved(pattern), [10 - 16 / 3, 2.0, 4.0, 6.0, 8.0, 10.0, 10 - 8 / 3])


def test_phase_smoothing_leaves_unobserved_phases_out():
    pattern = np.full(48, 5.0)
    pattern[10:13] = np.nan
    np.testing.assert_allclose(smooth_phase(pattern, 300.0)[5:20], 5.0)  # NaN are not zeros
    np.testing.assert_allclose(running_median(pattern, 5)[5:20], 5.0)
    assert np.isnan(running_median(pattern, 1)[11])  # no observed phase in its window: left for the fill
    assert running_median(pattern, 1).shape == pattern.shape  # width 1 (a step of 4 h) is the pattern itself


def test_phase_smoothing_averages_noise_but_keeps_a_sharp_edge():
    rng = np.random.default_rng(7)
    square = np.where(np.arange(288) < 216, 80.0, 20.0)  # a job stops at 18:00 every day
    noisy = square + rng.normal(0.0, 0.3, 288)
    smoothed = smooth_phase(noisy, 300.0)
    assert np.max(np.abs(smoothed - square)) < 1.0  # a plain average is off by up to 26 next to the edge
    assert np.max(np.abs(phase_average(noisy, 7) - square)) > 20.0
    assert np.std(smoothed[20:200] - square[20:200]) < 0.6 * np.std(noisy[20:200] - square[20:200])
    curve = 50.0 + 20.0 * np.sin(2 * np.pi * np.arange(288) / 288) + rng.normal(0.0, 0.5, 288)
    np.testing.assert_array_equal(smooth_phase(curve, 300.0), phase_average(curve, 7))  # no edge: the average


@pytest.mark.parametrize("model", ["stl", "mstl"])
@pytest.mark.parametrize("offset", [0.0, 120.0, 200.0])
def test_a_daily_square_wave_stays_inside_its_band_at_the_edges(model, offset):
    """NAB's art_daily_perfect_square_wave left its band at the edge every day and alerted daily. With samples
    off the step's multiples by more than half a step (six NAB files: 5-minute data at hh:04, hh:09, ...) the
    forecast was also one slot early: the fit rounds a sample to the nearest grid slot, the forecast truncated."""
    rng = np.random.default_rng(11)
    timestamps = MIDWEEK - 10 * DAY + offset + 300.0 * np.arange(10 * 288)
    hour = (timestamps % DAY) / 3600.0
    values = np.where((hour >= 9) & (hour < 18), 80.0, 20.0) + rng.normal(0.0, 0.5, timestamps.size)
    series = type("Series", (), {"timestamps": timestamps, "values": values})
    _, band, future = fit_and_predict(series, model)
    assert np.max(anomaly_scores(values[future], band, "both")) < 1.0


def test_seasonality_choice_and_reason():
    assert choose_seasonality("auto", 28 * DAY).name == "weekly"
    short = choose_seasonality("auto", 9 * DAY)
    assert short.name == "daily" and "weekly needs 21d" in short.note
    assert choose_seasonality("weekly", 5 * DAY).name == "daily"
    assert choose_seasonality("daily", 28 * DAY).name == "daily"
    assert choose_seasonality("auto", DAY).name == "none"


@pytest.mark.parametrize("model", MODELS)
def test_weekly_pattern_is_learned_with_enough_history(model):
    series = generate(days=28, seed=6, weekend_dip=0.4, daily_amplitude=0.0, noise=0.02)
    baseline, band, future = fit_and_predict(series, model, horizon_days=2)
    assert baseline.seasonality.name == "weekly"
    error = np.abs(band.expected - series.clean[future]) / series.clean[future]
    assert np.mean(error) < 0.03  # the weekend dip (40%) is predicted


def test_stl_forecast_error_across_a_weekend_is_under_a_quarter_of_the_noise():
    """The daily shape rests on 28 days and the weekly part only adds the weekend: with 4 weeks of history a
    weekly shape by phase alone rests on 4 samples per phase (measured 1.31% here before)."""
    errors = []
    for seed in range(6):
        series = generate(days=30, seed=seed, noise=0.05, weekend_dip=0.2, daily_amplitude=0.3)
        _, band, future = fit_and_predict(series, "stl", horizon_days=2)  # Saturday and Sunday
        errors.append(np.sqrt(np.mean(((band.expected - series.clean[future]) / series.clean[future]) ** 2)))
    assert np.mean(errors) < 0.012


def test_stl_daily_only_shape_follows_a_change_of_shape_within_days():
    """With daily seasonality only, the shape rests on the last 4 days: a daily swing that grew 3 days ago is
    the swing forecast for tomorrow (real daily shapes change; 28 days of memory cost 8.7 NAB points)."""
    series = generate(days=10, seed=4, noise=0.02, weekend_dip=0.0, daily_amplitude=0.1)
    swing = generate(days=10, seed=4, noise=0.0, weekend_dip=0.0, daily_amplitude=0.4)
    recent = series.timestamps >= series.timestamps[-1] - 3 * DAY
    series.values[recent] *= swing.clean[recent] / series.clean[recent]
    baseline = get_model("stl").fit(series.timestamps, series.values, FitContext(step=300))
    tomorrow = series.timestamps[-288:] + DAY
    assert baseline.seasonality.name == "daily"
    error = np.abs(baseline.predict(tomorrow).expected - swing.clean[-288:]) / swing.clean[-288:]
    assert np.mean(error) < 0.03


MONDAY = 1_767_571_200.0  # 2026-01-05 00:00 UTC, the generator's default end


def fit_before(series, cutoff: float, days: float, **context):
    """(The baseline fitted on the ``days`` before ``cutoff``, the mask of the day after it.)"""
    train = (series.timestamps <= cutoff) & (series.timestamps > cutoff - days * DAY)
    model, step = context.pop("model", "stl"), context.pop("step", 300)
    baseline = get_model(model).fit(series.timestamps[train], series.values[train], FitContext(step=step, **context))
    return baseline, (series.timestamps > cutoff) & (series.timestamps <= cutoff + DAY)


def has_weekend_part(baseline) -> bool:
    if baseline.model == "profile":
        return baseline.weekend is not None
    return any(period == 7 * DAY for period, _ in baseline.patterns)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("days_before_tuesday", [3, 2, 1], ids=["saturday", "sunday", "monday"])
def test_a_weekend_dip_is_forecast_from_two_weeks_of_history(model, days_before_tuesday):
    """14 days (Prometheus keeps 15 by default) are too few for a weekly period, but two weekends that agree
    give the weekend its own daily shape. Daily-only, this forecast was off by 10% of the level (RMS) and 3-4%
    of the samples left the band (STL; the profile's band was as wide as the weekend dip, its error 7%); the
    Monday after a weekend came from a mix of both."""
    for seed in range(3):
        series = generate(days=20, seed=seed, noise=0.05, weekend_dip=0.15, end=MONDAY + DAY)
        baseline, day = fit_before(series, MONDAY + DAY - days_before_tuesday * DAY, 14, model=model)
        band = baseline.predict(series.timestamps[day])
        assert baseline.seasonality.name == "daily" and has_weekend_part(baseline)
        assert baseline.seasonality.note.endswith("daily, with its own weekend shape")
        error = (band.expected - series.clean[day]) / series.clean[day]
        assert np.sqrt(np.mean(error**2)) < 0.02
        assert np.sum(anomaly_scores(series.values[day], band, "both") > 1) <= 1


@pytest.mark.parametrize("step", [60, 420, 3600])
def test_a_weekend_shape_at_other_steps(step):
    """The weekend part is read at the nearest daily slot, so a step that does not divide a day (7 min) works."""
    series = generate(days=17, seed=1, weekend_dip=0.15, step=step, end=MONDAY - DAY)  # to Sunday 00:00
    baseline, saturday = fit_before(series, MONDAY - 2 * DAY, 16, step=step)
    expected = baseline.predict(series.timestamps[saturday]).expected
    assert has_weekend_part(baseline)
    assert np.sqrt(np.mean(((expected - series.clean[saturday]) / series.clean[saturday]) ** 2)) < 0.03


@pytest.mark.parametrize("model", ["stl", "profile"])
def test_no_weekend_split_without_a_repeated_weekend_effect(model):
    """No split without a weekend effect, with one weekend only, with an effect in the latest weekend only (a
    change that started on a Saturday is not a weekend effect), or when daily seasonality was asked for."""
    cutoff = MONDAY - 2 * DAY  # Saturday 00:00
    for seed in range(5):
        flat = generate(days=20, seed=seed, noise=0.05, weekend_dip=0.0)
        assert not has_weekend_part(fit_before(flat, cutoff, 14, model=model)[0])
    dipped = generate(days=20, seed=1, noise=0.05, weekend_dip=0.15)
    assert has_weekend_part(fit_before(dipped, cutoff, 14, model=model)[0])  # the control: the same with a dip
    assert not has_weekend_part(fit_before(dipped, cutoff, 14, model=model, seasonality="daily")[0])
    assert not has_weekend_part(fit_before(dipped, cutoff, 8, model=model)[0])  # one weekend in the 8 days
    latest_only = generate(days=20, seed=1, noise=0.05, weekend_dip=0.0)
    last_weekend = latest_only.timestamps > cutoff - 7 * DAY
    latest_only.values[last_weekend] = dipped.values[last_weekend]
    assert not has_weekend_part(fit_before(latest_only, cutoff, 14, model=model)[0])


def test_daily_pattern_follows_local_time_across_dst():
    """A pattern tied to 09:00 Berlin time shifts by an hour in UTC at the DST change; the profile follows."""
    end = 1_711_929_600.0 + 3 * DAY  # a few days after the 2024-03-31 switch to CEST
    timestamps = end - 300 * np.arange(14 * 288, 0, -1, dtype=np.float64)
    local = local_seconds(timestamps, "Europe/Berlin")
    busy = ((local % DAY) >= 9 * 3600) & ((local % DAY) < 17 * 3600)
    rng = np.random.default_rng(0)
    values = np.where(busy, 2.0, 1.0) * (1 + rng.normal(0, 0.02, len(timestamps)))
    train = timestamps < end - DAY
    for timezone, expect_good in (("Europe/Berlin", True), ("UTC", False)):
        baseline = get_model("profile").fit(timestamps[train], values[train], FitContext(step=300, timezone=timezone))
        band = baseline.predict(timestamps[~train])
        false_alarms = np.sum(anomaly_scores(values[~train], band, "both") > 1)
        assert (false_alarms == 0) == expect_good


def test_gated_band_keeps_one_at_the_edge():
    series = generate(days=14, seed=1)
    _, band, future = fit_and_predict(series, "profile")
    gated = gated_band(band, min_abs_deviation=0.0, min_rel_deviation=0.5)
    half = gated.upper - gated.expected
    assert np.allclose(half, 0.5 * gated.expected)
    on_edge = gated.expected + half
    assert np.allclose(anomaly_scores(on_edge, gated, "both"), 1.0)
    assert np.all(anomaly_scores(series.values[future], gated, "both") < 1)


def test_robust_scale_treats_a_mad_of_rounding_noise_as_zero():
    """A mostly-zero series with bursts: residuals of +-1e-10 around 0 are equal, so the scale falls back to the
    standard deviation instead of a band of width ~0 (anomaly scores of 10^15 on NAB's disk-write series)."""
    residuals = np.random.default_rng(0).normal(0.0, 1e-10, 1000)
    residuals[:5] = 1e7
    assert robust_scale(residuals) == pytest.approx(np.std(residuals))
    small_but_real = np.random.default_rng(1).normal(0.0, 1e-3, 1000)
    small_but_real[:3] = 1e7  # bursts do not hide a real MAD
    assert robust_scale(small_but_real) == pytest.approx(1e-3, rel=0.1)


def test_rounding_noise_is_the_lattice_step_over_root_12_and_zero_off_a_lattice():
    assert rounding_noise(np.array([0.0, 1.0, 3.0, np.nan, 2.0])) == pytest.approx(1 / np.sqrt(12))
    assert rounding_noise(np.array([0.25, 0.5, 1.75])) == pytest.approx(0.25 / np.sqrt(12))
    assert rounding_noise(np.random.default_rng(0).normal(size=200)) == 0.0  # not on a lattice
    assert rounding_noise(np.array([3.0, 3.0, np.nan])) == 0.0  # one distinct value: no step


@pytest.mark.parametrize("model", ["stl", "profile"])
def test_a_low_count_series_gets_a_band_no_narrower_than_its_rounding(model):
    """Poisson counts at 0.5 a step (mostly 0): without the floor the band collapsed to +-0.02 at some refits
    and every count of 1 scored about 40."""
    rng = np.random.default_rng(4)
    series = generate(days=21, level=1.0, weekend_dip=0.0, noise=0.0, seed=4)
    values = rng.poisson(0.5, series.values.size).astype(float)
    context = FitContext(step=300.0, timezone="UTC", seasonality="auto", band_sigmas=4.0)
    baseline = attach_reference(get_model(model).fit(series.timestamps, values, context), series.timestamps, values)
    band = baseline.predict(series.timestamps[-288:])
    assert np.all(band.upper - band.expected >= 4.0 / np.sqrt(12) - 1e-9)
    scores = anomaly_scores(np.ones(288), band, "lower_is_better")
    assert scores.max() < 1.0  # a count of 1 is inside the band
