"""Prophet baselines: deterministic bands, silent logging, fallback to STL with the reason, storage round trip,
and the ``model: auto`` rule. Few fits (about 1 s each) on 10 days of generated 5-minute data."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from analyzer.models import FitContext, get_model
from analyzer.models.auto import choose_model
from analyzer.models.fitting import FitRequest, fit_one
from analyzer.models.prophet import FittedProphet, ProphetModel, ProphetOptions
from analyzer.state.store import dump_baseline, load_baseline
from analyzer.synthetic import generate, inject_step

CONTEXT = FitContext(step=300.0)


@pytest.fixture(scope="module")
def series():
    return generate(days=10, level=0.2, noise=0.04, weekend_dip=0.0, seed=5)


@pytest.fixture(scope="module")
def fitted(series):
    return ProphetModel().fit(series.timestamps, series.values, CONTEXT)


def test_same_data_gives_identical_bands(series, fitted):
    again = ProphetModel().fit(series.timestamps, series.values, CONTEXT)
    future = series.timestamps[-1] + 300.0 * np.arange(1, 3000)  # inside and beyond the 7-day forecast
    first, second = fitted.predict(future), again.predict(future)
    np.testing.assert_array_equal(first.expected, second.expected)
    np.testing.assert_array_equal(first.lower, second.lower)
    np.testing.assert_array_equal(first.upper, second.upper)


def test_forecast_follows_the_daily_shape_with_a_band_of_the_noise(series, fitted):
    following = generate(
        days=12, level=0.2, noise=0.04, weekend_dip=0.0, seed=5, end=series.timestamps[-1] + 2 * 86400.0
    )
    ahead = following.timestamps > series.timestamps[-1]
    band = fitted.predict(following.timestamps[ahead])
    error = np.abs(band.expected - following.clean[ahead])
    assert np.median(error) < 0.1 * 0.2  # within 10% of the level
    inside = (following.values[ahead] >= band.lower) & (following.values[ahead] <= band.upper)
    assert inside.mean() > 0.97  # 4 sigma band on clean data
    assert fitted.seasonality.name == "daily"  # 10 days < 21 days: weekly is not fitted


def test_logging_is_silenced(series, caplog):
    with caplog.at_level(logging.DEBUG):
        ProphetModel(ProphetOptions(fit_resolution=1800.0)).fit(series.timestamps, series.values, CONTEXT)
    assert not [r for r in caplog.records if r.name.startswith(("cmdstanpy", "prophet"))]


def test_a_failed_fit_falls_back_to_stl_with_the_reason(series):
    options = ProphetOptions(fit_timeout=0.001)  # cmdstan cannot finish in a millisecond
    outcome = fit_one(FitRequest("k", "prophet", series.timestamps, series.values, CONTEXT, options))
    assert outcome.baseline is not None and outcome.baseline.model == "stl"
    assert outcome.model == "prophet"
    assert "prophet fit failed" in outcome.note and "fell back to stl" in outcome.note


def test_fallback_chain_ends_at_the_profile():
    values = np.full(200, np.nan)
    values[:20] = np.linspace(1, 2, 20)  # 20 samples: prophet and STL cannot, the profile can
    timestamps = 300.0 * np.arange(200)
    outcome = fit_one(FitRequest("k", "stl", timestamps, values, CONTEXT))
    assert outcome.baseline is not None


def test_stored_prophet_baseline_predicts_exactly_as_before(series, fitted):
    again = load_baseline(dump_baseline(fitted))
    assert isinstance(again, FittedProphet) and again.params == fitted.params
    future = series.timestamps[-1] + 300.0 * np.arange(1, 3000)
    np.testing.assert_array_equal(again.predict(future).expected, fitted.predict(future).expected)


def test_auto_picks_the_profile_for_short_history_and_compares_holdout_errors_otherwise():
    short = generate(days=3, seed=1)
    assert choose_model([(short.timestamps, short.values)], CONTEXT, get_model).model == "profile"
    # a level step 3.5 days before the end: the profile keeps the old level, STL follows the new one
    stepped = generate(days=10, seed=2)
    inject_step(stepped, stepped.timestamps[-1] - 3.5 * 86400.0, 0.6)
    choice = choose_model([(stepped.timestamps, stepped.values)], CONTEXT, get_model)
    assert set(choice.errors) == {"profile", "stl"}  # < 14 days: prophet is not a candidate
    assert choice.model == "stl" and choice.errors["stl"] < choice.errors["profile"]


def test_auto_considers_prophet_from_two_weeks_of_history():
    history = generate(days=15, seed=3)
    choice = choose_model([(history.timestamps, history.values)], CONTEXT, get_model)
    assert set(choice.errors) == {"profile", "stl", "prophet"}
    assert choice.model in choice.errors
