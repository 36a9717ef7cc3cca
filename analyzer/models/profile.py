"""Robust seasonal profile: median and MAD per time-of-week (or time-of-day) slot, in numpy.

Each slot pools its neighbours (``POOL_SECONDS`` either side) across all cycles of the history, so four weeks
of 5-minute data give about 28 samples per weekly slot instead of 4. Medians make it immune to the spikes in
the history that would drag a mean. With a daily period (less than 21 days of history) the weekend gets its
own time-of-day slots when ``analyzer.models.weekend`` finds that it differs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from analyzer.models.base import (
    DAY,
    BaselineModel,
    FitContext,
    FitError,
    FittedBaseline,
    Seasonality,
    choose_seasonality,
    fill_unobserved,
    robust_scale,
)
from analyzer.models.calendar import local_seconds, phase
from analyzer.models.weekend import (
    on_weekend,
    spread_scale,
    weekend_difference,
    weekend_groups,
    with_weekend_note,
)

MAX_SLOTS_PER_DAY = 288  # slots never narrower than 5 minutes
POOL_SECONDS = 900.0  # +-15 minutes of neighbouring slots
MIN_SCALE_SHARE = 0.8  # a slot's scale is at least 0.8 x the global one (few samples per slot; measured:
# 0.5 gave 8 false alarms in 2,880 clean points, 0.8 gave 3)


@dataclass
class FittedProfile(FittedBaseline):
    seasonality: Seasonality
    timezone: str
    band_sigmas: float
    trained_from: float
    trained_to: float
    slot_seconds: float
    medians: np.ndarray
    scales: np.ndarray
    model: str = "profile"
    weekend: tuple[np.ndarray, np.ndarray] | None = None  # (medians, scales) of a daily profile's weekend slots

    def expected_and_scale(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.seasonality.name == "none":
            return np.full(local.shape, self.medians[0]), np.full(local.shape, self.scales[0])
        slots = slot_index(local, self.seasonality.period, self.slot_seconds)
        if self.weekend is None:
            return self.medians[slots], self.scales[slots]
        weekend = on_weekend(local)
        medians, scales = self.weekend
        expected = np.where(weekend, medians[slots], self.medians[slots])
        return expected, np.where(weekend, scales[slots], self.scales[slots])


def slot_index(local: np.ndarray, period: float, slot_seconds: float) -> np.ndarray:
    return (phase(local, period) // slot_seconds).astype(np.int64) % int(round(period / slot_seconds))


def slot_matrix(local: np.ndarray, values: np.ndarray, period: float, slot_seconds: float) -> np.ndarray:
    """Values laid out as (slot, sample-of-slot) with NaN where nothing was observed."""
    slots = slot_index(local, period, slot_seconds)
    n_slots = int(round(period / slot_seconds))
    order = np.argsort(slots, kind="stable")
    counts = np.bincount(slots, minlength=n_slots)
    width = int(counts.max())
    rank = np.arange(len(slots)) - np.repeat(np.cumsum(counts) - counts, counts)
    matrix = np.full((n_slots, width), np.nan)
    matrix[slots[order], rank] = values[order]
    return matrix


def pooled(matrix: np.ndarray, neighbours: int) -> np.ndarray:
    """Each slot's row extended with the rows of its +-``neighbours`` slots (circular)."""
    return np.concatenate([np.roll(matrix, shift, axis=0) for shift in range(-neighbours, neighbours + 1)], axis=1)


class ProfileModel(BaselineModel):
    name = "profile"

    def fit(self, timestamps: np.ndarray, values: np.ndarray, context: FitContext) -> FittedProfile:
        observed = np.isfinite(values)
        if observed.sum() < 10:
            raise FitError("fewer than 10 observed samples")
        timestamps, values = timestamps[observed], values[observed]
        season = choose_seasonality(context.seasonality, float(timestamps[-1] - timestamps[0]) + context.step)
        global_scale = robust_scale(values - np.median(values))
        weekend = None
        if season.name == "none":
            medians, scales, slot_seconds = np.array([np.median(values)]), np.array([global_scale]), 0.0
        else:
            slot_seconds = max(context.step, 86400.0 / MAX_SLOTS_PER_DAY)
            local = local_seconds(timestamps, context.timezone)
            split = None
            if season.name == "daily" and context.seasonality != "daily":
                split = self._weekend_split(local, values, slot_seconds, context.step)
            if split is None:
                medians, scales = self._profile(local, values, season.period, slot_seconds)
            else:
                (medians, scales), weekend = split
                season = with_weekend_note(season)
        return FittedProfile(
            seasonality=season,
            timezone=context.timezone,
            band_sigmas=context.band_sigmas,
            trained_from=float(timestamps[0]),
            trained_to=float(timestamps[-1]),
            slot_seconds=slot_seconds,
            medians=medians,
            scales=scales,
            weekend=weekend,
        )

    def _profile(
        self, local: np.ndarray, values: np.ndarray, period: float, slot_seconds: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Slot medians and scales; a slot's scale is never below ``MIN_SCALE_SHARE`` of the residual scale."""
        medians, scales = self._slot_statistics(local, values, period, slot_seconds)
        residual_scale = robust_scale(values - medians[slot_index(local, period, slot_seconds)])
        return medians, np.maximum(np.nan_to_num(scales, nan=residual_scale), MIN_SCALE_SHARE * residual_scale)

    def _weekend_split(
        self, local: np.ndarray, values: np.ndarray, slot_seconds: float, step: float
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
        """((medians, scales) of the weekdays' daily profile, the same of the weekend's), or None when the
        weekend does not differ from the weekdays (``analyzer.models.weekend``)."""
        groups = weekend_groups(local, np.ones(local.size, dtype=bool), step)
        if groups is None:
            return None
        weekdays = ~on_weekend(local)
        weekday = self._profile(local[weekdays], values[weekdays], DAY, slot_seconds)
        noise = spread_scale(values[weekdays] - weekday[0][slot_index(local[weekdays], DAY, slot_seconds)])
        latest, earlier = (self._slot_statistics(local[g], values[g], DAY, slot_seconds)[0] for g in groups[:2])
        weekend = self._profile(local[groups[2]], values[groups[2]], DAY, slot_seconds)
        if weekend_difference((latest, earlier, weekend[0]), weekday[0], noise) is None:
            return None
        return weekday, weekend

    @staticmethod
    def _slot_statistics(
        local: np.ndarray, values: np.ndarray, period: float, slot_seconds: float
    ) -> tuple[np.ndarray, np.ndarray]:
        neighbours = int(POOL_SECONDS // slot_seconds)
        samples = pooled(slot_matrix(local, values, period, slot_seconds), neighbours)
        with warnings.catch_warnings():  # all-NaN slots are expected (gaps) and filled below from their neighbours
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(samples, axis=1)
            scales = np.nanmedian(np.abs(samples - medians[:, None]), axis=1) * 1.4826
        return fill_unobserved(medians), scales
