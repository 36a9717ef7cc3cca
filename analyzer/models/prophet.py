"""Prophet baselines: daily and weekly seasonality (optionally a country's holidays) on local wall-clock time.

Prophet itself is large and not worth keeping: after the fit its forecast is reduced to small arrays, so the
fitted baseline pickles and stores cheaply like the others:

* ``forecast``: Prophet's expected value for every step of ``HORIZON_SECONDS`` after the training window
  (trend, seasonality and holidays as Prophet sees them), used while the baseline is that young;
* ``level`` + ``pattern``: the trend at the end of the horizon plus the seasonal cycle by phase, used after it
  (a pinned or manual baseline can live for weeks; extrapolating Prophet's trend that far would run away).

The band is ``band_sigmas`` x the robust scale of the in-sample residuals, as for STL and the profile, so an
anomaly score of 1.0 means the same for every model. Prophet's own sampled intervals are not used by default
(``uncertainty_samples: 0``): sampling dominates its predict time, and a sampled band differs run to run unless
seeded. With ``uncertainty_samples > 0`` the band is the wider of the two, and numpy is seeded for it.

Determinism: the optimiser (L-BFGS from Prophet's fixed initial values) gets a fixed seed; Newton's fallback
is disabled (13 s per fit on these machines). A fit that fails or exceeds ``fit_timeout`` raises FitError, so
analyzer.models.fitting falls back to STL and records why.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.models.base import (
    DAY,
    WEEK,
    BaselineModel,
    FitContext,
    FitError,
    FittedBaseline,
    Seasonality,
    choose_seasonality,
    robust_scale,
)
from analyzer.models.calendar import local_seconds, phase
from analyzer.options import PROPHET_FIT_TIMEOUT, ProphetOptions  # noqa: F401 (ProphetOptions re-exported)

HORIZON_SECONDS = 7 * DAY
SEED = 20260101
DEFAULT_TIMEOUT = PROPHET_FIT_TIMEOUT
_Z80 = 1.2816  # Prophet's default interval_width 0.8 is +-1.28 sigma


@dataclass
class FittedProphet(FittedBaseline):
    seasonality: Seasonality
    timezone: str
    band_sigmas: float
    trained_from: float
    trained_to: float
    step: float
    forecast_start: float  # local seconds of forecast[0]
    forecast: np.ndarray
    forecast_scale: np.ndarray  # per-step scale (constant unless sampled intervals are wider)
    level: float
    pattern_period: float
    pattern: np.ndarray  # seasonal effect by phase, one value per step of the period
    scale: float
    params: dict = field(default_factory=dict)
    model: str = "prophet"

    def expected_and_scale(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.rint((local - self.forecast_start) / self.step).astype(np.int64)
        inside = (index >= 0) & (index < len(self.forecast))
        expected = np.full(local.shape, self.level)
        if self.pattern_period > 0:
            slots = (phase(local, self.pattern_period) // self.step).astype(np.int64) % len(self.pattern)
            expected = expected + self.pattern[slots]
        scale = np.full(local.shape, self.scale)
        safe = np.clip(index, 0, len(self.forecast) - 1)
        expected = np.where(inside, self.forecast[safe], expected)
        scale = np.where(inside, self.forecast_scale[safe], scale)
        return expected, scale


def _import_prophet():
    """Prophet with its logging silenced: cmdstanpy ignores setLevel, so the loggers are disabled."""
    logging.getLogger("prophet.plot").disabled = True
    from prophet import Prophet

    logging.getLogger("cmdstanpy").disabled = True
    logging.getLogger("prophet").setLevel(logging.WARNING)
    return Prophet


def bucket_means(local: np.ndarray, values: np.ndarray, resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Means over ``resolution``-second buckets of local time, stamped at the bucket's mean time.

    Prophet's fit time grows with the number of rows (cmdstan's JSON input alone is a third of it): at 28 days x
    5 minutes, fitting on 15-minute means took 0.67 s and on 30-minute means 0.45 s instead of 2.2 s on these
    machines, with the same forecast error (0.0030 on a level of 0.2 in all three: the seasonal shapes are smooth
    Fourier series and the trend is piecewise linear; neither needs every sample). Residuals and the band are
    still computed on every sample.
    """
    buckets = np.floor(local / resolution).astype(np.int64)
    if resolution <= 0 or len(np.unique(buckets)) == len(buckets):
        return local, values
    _, first, counts = np.unique(buckets, return_index=True, return_counts=True)
    return np.add.reduceat(local, first) / counts, np.add.reduceat(values, first) / counts


def local_frame(local: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"ds": pd.to_datetime(np.rint(local).astype(np.int64), unit="s")})


class ProphetModel(BaselineModel):
    name = "prophet"

    def __init__(self, options: ProphetOptions | None = None) -> None:
        self.options = options or ProphetOptions()

    def fit(self, timestamps: np.ndarray, values: np.ndarray, context: FitContext) -> FittedProphet:
        observed = np.isfinite(values)
        if observed.sum() < 10:
            raise FitError("fewer than 10 observed samples")
        timestamps, values = timestamps[observed], values[observed]
        local = local_seconds(timestamps, context.timezone)
        season = choose_seasonality(context.seasonality, float(timestamps[-1] - timestamps[0]) + context.step)
        with warnings.catch_warnings():  # pandas deprecations inside Prophet, once per fit, say nothing useful
            warnings.simplefilter("ignore")
            return self._fit(timestamps, values, local, context, season)

    def _fit(self, timestamps, values, local, context: FitContext, season: Seasonality) -> FittedProphet:
        prophet = self._fitted(*bucket_means(local, values, self.options.fit_resolution), season)
        fitted = self._predict(prophet, local)
        residual_scale = robust_scale(values - fitted["yhat"].to_numpy())
        step = context.step
        start = np.floor(local[-1] / step) * step + step
        future = self._predict(prophet, start + step * np.arange(int(HORIZON_SECONDS // step)))
        forecast = future["yhat"].to_numpy()
        forecast_scale = np.full(len(forecast), residual_scale)
        if self.options.uncertainty_samples > 0:
            sampled = (future["yhat_upper"].to_numpy() - future["yhat_lower"].to_numpy()) / (2 * _Z80)
            forecast_scale = np.maximum(forecast_scale, sampled)
        period = season.period
        level = float(future["trend"].to_numpy()[-1])
        pattern = self._pattern(prophet, period, step, level) if period else np.zeros(1)
        return FittedProphet(
            seasonality=season,
            timezone=context.timezone,
            band_sigmas=context.band_sigmas,
            trained_from=float(timestamps[0]),
            trained_to=float(timestamps[-1]),
            step=step,
            forecast_start=float(start),
            forecast=forecast,
            forecast_scale=forecast_scale,
            level=level,
            pattern_period=period,
            pattern=pattern,
            scale=residual_scale,
            params=self._params(),
        )

    def _params(self) -> dict:
        o = self.options
        return {"changepoint_prior_scale": o.changepoint_prior_scale, "seasonality_mode": o.seasonality_mode,
                "seasonality_prior_scale": o.seasonality_prior_scale, "country_holidays": o.country_holidays,
                "uncertainty_samples": o.uncertainty_samples, "fit_resolution": o.fit_resolution}  # fmt: skip

    def _fitted(self, local: np.ndarray, values: np.ndarray, season: Seasonality):
        Prophet = _import_prophet()
        o = self.options
        prophet = Prophet(
            daily_seasonality=season.name in ("daily", "weekly"),
            weekly_seasonality=season.name == "weekly",
            yearly_seasonality=False,
            changepoint_prior_scale=o.changepoint_prior_scale,
            seasonality_prior_scale=o.seasonality_prior_scale,
            seasonality_mode=o.seasonality_mode,
            uncertainty_samples=o.uncertainty_samples,
        )
        prophet.stan_backend.newton_fallback = False
        if o.country_holidays:
            prophet.add_country_holidays(country_name=o.country_holidays)
        frame = local_frame(local)
        frame["y"] = values
        try:
            prophet.fit(frame, seed=SEED, timeout=o.fit_timeout)
        except Exception as exc:  # cmdstan reports failures as several exception types
            raise FitError(f"prophet fit failed: {type(exc).__name__}: {exc}") from exc
        return prophet

    @staticmethod
    def _predict(prophet, local: np.ndarray) -> pd.DataFrame:
        if prophet.uncertainty_samples:
            np.random.seed(SEED)  # Prophet samples intervals with numpy's global generator
        return prophet.predict(local_frame(local))

    @staticmethod
    def _pattern(prophet, period: float, step: float, level: float) -> np.ndarray:
        """The seasonal effect at each phase of the period, starting at phase 0 (Monday 00:00 for weekly);
        multiplicative terms are taken at the final trend level."""
        monday = 4 * DAY  # 1970-01-05 was a Monday: phase 0 of calendar.phase
        grid = monday + 52 * WEEK + step * np.arange(int(round(period / step)))
        components = prophet.predict_seasonal_components(prophet.setup_dataframe(local_frame(grid)))
        return components["additive_terms"].to_numpy() + level * components["multiplicative_terms"].to_numpy()
