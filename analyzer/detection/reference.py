"""The reference residuals of a baseline: what its regression verdicts compare recent residuals with."""

from __future__ import annotations

import numpy as np

from analyzer.detection.stats import lag1_autocorrelation
from analyzer.models.base import (
    REFERENCE_MAX_SAMPLES,
    REFERENCE_SECONDS,
    FittedBaseline,
    Reference,
    robust_scale,
    rounding_noise,
)


def attach_reference(
    baseline: FittedBaseline, timestamps: np.ndarray, values: np.ndarray, exclude_recent: float = 0.0
) -> FittedBaseline:
    """Keep a sample of the residuals of ``REFERENCE_SECONDS`` of history against the baseline's forecast (not
    the in-sample decomposition residuals, which are too small: the trend follows the data), ending
    ``exclude_recent`` seconds before the end of the history. The service passes its regression window there,
    so the "before" window never overlaps the "recent" one it is compared with: otherwise a change already under
    way when the baseline is fitted (a cold start) sits on both sides of the test and hides itself."""
    baseline.min_scale = rounding_noise(values)
    end = timestamps[-1] - exclude_recent
    recent = np.isfinite(values) & (timestamps > end - REFERENCE_SECONDS) & (timestamps <= end)
    if recent.sum() < 10:
        return baseline
    residuals = values[recent] - baseline.predict(timestamps[recent]).expected
    keep = np.linspace(0, residuals.size - 1, min(residuals.size, REFERENCE_MAX_SAMPLES)).round().astype(np.int64)
    spacing = float(np.median(np.diff(timestamps[recent][keep])))
    blocks = block_medians(residuals, keep.size) if keep.size < residuals.size else None
    scale = max(robust_scale(residuals), baseline.min_scale)
    baseline.reference = Reference(residuals[keep], scale, lag1_autocorrelation(residuals), spacing, blocks)
    return baseline


def block_medians(residuals: np.ndarray, count: int) -> np.ndarray:
    """Medians of ``count`` consecutive blocks of ``residuals`` (sizes differ by at most one).

    Why: a kept residual of a thinned reference is one sample where the recent window has several (3 days of
    1-minute data keep every 4th, of 10-second data every 26th). The precedent search compares the median of a
    stretch of kept residuals with the recent window's median, so point samples made stretches noisier than the
    window they are compared with, and a step was held back as "reached before" by noise alone."""
    edges = np.linspace(0, residuals.size, count + 1).round().astype(np.int64)
    width = int(np.diff(edges).max())
    index = edges[:-1, None] + np.arange(width)
    padded = np.where(index < edges[1:, None], residuals[np.minimum(index, residuals.size - 1)], np.nan)
    return np.nanmedian(padded, axis=1)
