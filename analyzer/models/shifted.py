"""A baseline moved by a constant (an accepted level, an adopted improvement)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.models.base import FittedBaseline, Seasonality


@dataclass
class ShiftedBaseline(FittedBaseline):
    """A baseline moved by a constant: the level a person accepted (or an improvement adopted) as normal."""

    inner: FittedBaseline
    offset: float

    @property
    def model(self) -> str:  # type: ignore[override]
        return self.inner.model

    @property
    def seasonality(self) -> Seasonality:  # type: ignore[override]
        return self.inner.seasonality

    @property
    def timezone(self) -> str:  # type: ignore[override]
        return self.inner.timezone

    @property
    def band_sigmas(self) -> float:  # type: ignore[override]
        return self.inner.band_sigmas

    @property
    def trained_from(self) -> float:  # type: ignore[override]
        return self.inner.trained_from

    @property
    def trained_to(self) -> float:  # type: ignore[override]
        return self.inner.trained_to

    def expected_and_scale(self, local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        expected, scale = self.inner.expected_and_scale(local)
        return expected + self.offset, scale
