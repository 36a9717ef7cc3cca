"""Novelty: how unlike every window of the series' own recent history its latest window of values is.

The anomaly score measures one thing: how far a sample is from the level expected at this time of day. Changes
of pattern stay inside that band: a series that starts to oscillate, falls flat, spikes more often, settles at
values it never took. The novelty score is a second kind of evidence for those. It follows the conformal
nearest-neighbour detector KNN-CAD (Burnaev and Ishimtsev, "Conformalized density- and distance-based anomaly
detection in time-series data", 2016; "KNN CAD" of the Numenta Anomaly Benchmark): a window of recent values is
embedded as a vector, its non-conformity is its distance to the nearest window of a training history, and that
distance is judged against the distances of a calibration set of the history's own windows to the training
windows (the conformal step).

Choices, and why:

* **The window** is the drift window (an hour, at least 6 samples): the shortest stretch the analyzer already
  treats as "recent", so a novelty means the same at every sampling step.
* **The embedding** describes the window's distribution of values, not their order (``features``): its quantile
  sketch (at most ``SKETCH_POINTS`` quantiles: for an hour of 5-minute samples, the values sorted; level and spread
  at any phase), and in logarithms its mean absolute deviation from the median (the spread) and its mean absolute
  step from one sample to the next (roughness: an oscillation, a series falling flat). Spread and roughness are
  compared as ratios (logarithms), because a change of variability is multiplicative: a window that stops varying
  is as new as one that varies ten times more, which a distance between raw values cannot see (on a noisy series
  there is always a window of small spread nearby). KNN-CAD embeds the raw values; an order-free embedding also
  makes windows comparable at any phase. The coordinates are divided by their robust spread over the training
  windows, the sketch's by one spread for all its quantiles (distances between sketches stay a 2-Wasserstein
  distance), so the score does not depend on the series' unit.
* **The training windows** are the windows of the last ``HISTORY_SECONDS`` (14 days, the length of the
  notification budget's record), one every ``samples + 1`` samples (their phases cycle through the day). A window
  is never compared with a training window it overlaps in time (it would share samples with it).
* **The scale** (score 1.0) is conformal: up to ``CHECKED_WINDOWS`` windows of the history at every phase (the
  calibration set) are each scored against the training windows they do not overlap, and
  ``analyzer.detection.calibration.calibrate``, on those as on a record, gives the distance exceeded ``budget``
  times a day. A series that keeps behaving as in its history crosses 1.0 about as often as its budget allows;
  the notification budget then calibrates the alert threshold on the scores the series actually exported
  (``analyzer.detection.budget``), as for the other alerts.

Cost: at each refit (in the fit worker), the embeddings of the kept and checked windows of 14 days and the
calibration distances (at most about 1,000 x 310 x 14); kept: 14 float32 numbers per training window (about 17 KB a
series at 5 minutes); a score is the embedding of one window and a distance to each training window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analyzer.detection.calibration import Blocks, calibrate, hourly_maxima

DAY = 86400.0
HISTORY_SECONDS = 14 * DAY
SKETCH_POINTS = 12  # quantiles kept per window (a 5-minute series' hour: every sample)
MIN_WINDOWS = 24  # a day of training windows: fewer give no novelty score
CHECKED_WINDOWS = 1024  # at most this many windows of the history (evenly spaced) set the scale
INFINITE_SCORE = 1e6  # a changed window of a series whose history never varied
RESOLUTION = 1e-6  # differences below this fraction of the values' magnitude are rounding (float32: 7 digits)


@dataclass
class NoveltyReference:
    """What the novelty score compares the latest window with (set at each refit, like ``Reference``)."""

    windows: np.ndarray  # (count, dimensions) standardised embeddings of the training windows, float32
    last_end: float  # the time of the last training window's last sample (one every samples + 1 steps before it)
    location: np.ndarray  # (dimensions,) what the embeddings are standardised with: minus location, over spread
    spread: np.ndarray  # (dimensions,)
    scale: float  # the distance the history's own windows exceed at the alert's budget: score 1.0
    samples: int  # samples per window
    step: float  # seconds between samples
    floor: float  # what the logarithms add to their argument: the values' resolution
    resolution: float = 0.0  # distances at most this are rounding of the float32 windows: no difference
    latest: tuple[float, float | None] | None = None  # (window end, score) of the last ``latest_score``


@dataclass(frozen=True)
class Learned:
    reference: NoveltyReference
    in_sample: Blocks  # hourly maxima of the calibration windows' scores: the novelty record's stand-in


def window_samples(drift_window: float, step: float) -> int:
    """Samples in a novelty window: the drift window at the data's step (``drift_window`` is already at least
    ``regression.MIN_DRIFT_SAMPLES`` steps)."""
    return max(int(round(drift_window / step)), 3)


def min_finite(samples: int) -> int:
    """The finite samples a window needs: half of it, at least 3."""
    return max(3, math.ceil(samples / 2))


def features(windows: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """The embedding of each row of ``windows`` (oldest sample first; NaN and infinite samples left out): its
    quantile sketch (``sketch_points`` quantiles, at (k + 1/2) / points: for a window of that many samples, its
    values sorted), then the logarithms (of ``floor`` plus) its mean absolute deviation from the median and its
    mean absolute step between consecutive samples (pairs with a missing sample left out); and which rows have
    enough finite samples to have one."""
    windows = np.where(np.isfinite(windows), windows, np.nan)
    finite = ~np.isnan(windows)
    counts = finite.sum(axis=1)
    usable = counts >= min_finite(windows.shape[1])
    points = sketch_points(windows.shape[1])
    ordered = np.sort(np.where(finite, windows, np.inf), axis=1)  # finite values first, ascending
    top = np.maximum(counts - 1, 0)[:, None]
    positions = np.clip(((np.arange(points) + 0.5) / points)[None, :] * counts[:, None] - 0.5, 0.0, top)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, top)
    weight = positions - low
    rows = np.arange(windows.shape[0])[:, None]
    below, above = ordered[rows, low], ordered[rows, high]
    with np.errstate(invalid="ignore"):  # rows without finite values: inf - inf, masked below
        sketch = np.where(weight > 0, below + weight * (above - below), below)
    sketch = np.where(usable[:, None], sketch, 0.0)
    middle = np.maximum(counts - 1, 0)
    lower_half, upper_half = ordered[rows[:, 0], middle // 2], ordered[rows[:, 0], (middle + 1) // 2]
    median = np.where(usable, 0.5 * (np.where(usable, lower_half, 0.0) + np.where(usable, upper_half, 0.0)), 0.0)
    spread = np.nanmean(np.abs(np.where(usable[:, None], windows, 0.0) - median[:, None]), axis=1)
    steps = np.abs(np.diff(windows, axis=1))  # pairs with a missing sample are NaN: left out
    paired = np.isfinite(steps).sum(axis=1)
    roughness = np.where(paired > 0, np.nansum(steps, axis=1) / np.maximum(paired, 1), 0.0)
    logs = np.log(np.column_stack((spread, roughness)) + floor)
    return np.where(usable[:, None], np.column_stack((sketch, logs)), 0.0), usable


def sketch_points(samples: int) -> int:
    return min(samples, SKETCH_POINTS)


def training_ends(reference: NoveltyReference) -> np.ndarray:
    """The time of each training window's last sample."""
    count = reference.windows.shape[0]
    return reference.last_end - (reference.samples + 1) * reference.step * np.arange(count - 1, -1, -1)


def nearest(queries: np.ndarray, query_ends: np.ndarray, reference: NoveltyReference) -> np.ndarray:
    """Each query's distance to the nearest training window that does not overlap it in time (windows ending
    less than ``samples`` steps apart share samples). The products go through ``einsum``, not a matrix product:
    the multithreaded BLAS of ``@`` costs milliseconds on a busy machine at these sizes."""
    windows = reference.windows.astype(np.float64)
    usable = np.isfinite(windows).all(axis=1)
    windows = np.where(usable[:, None], windows, 0.0)
    squared = (
        np.einsum("qk,qk->q", queries, queries)[:, None]
        + np.einsum("wk,wk->w", windows, windows)[None, :]
        - 2.0 * np.einsum("qk,wk->qw", queries, windows)
    )
    overlap = (reference.samples - 0.5) * reference.step
    excluded = ~usable[None, :] | (np.abs(query_ends[:, None] - training_ends(reference)[None, :]) < overlap)
    squared[excluded] = np.inf
    result = np.sqrt(np.maximum(squared.min(axis=1), 0.0)) if windows.shape[0] else np.full(len(queries), np.inf)
    return np.where(result > reference.resolution, result, 0.0)


def learn(times: np.ndarray, values: np.ndarray, step: float, drift_window: float, budget: float) -> Learned | None:
    """The reference of a fresh fit from its history (``times`` a regular grid at ``step``, ascending; NaN where
    missing), for an alert allowed ``budget`` episodes a day. None when the history holds fewer than
    ``MIN_WINDOWS`` usable windows."""
    samples = window_samples(drift_window, step)
    keep = times > times[-1] - HISTORY_SECONDS if times.size else np.zeros(0, dtype=bool)
    times, values = times[keep], values[keep]
    if values.size < samples:
        return None
    finite = values[np.isfinite(values)]
    floor = RESOLUTION * max(float(np.abs(finite).max()), 1.0) if finite.size else RESOLUTION
    windows_of = sliding_window_view(values, samples)  # window i ends at sample i + samples - 1
    present = np.concatenate(([0], np.cumsum(np.isfinite(values))))
    usable = present[samples:] - present[:-samples] >= min_finite(samples)
    ends = times[samples - 1 :]
    kept = np.arange(usable.size - 1, -1, -(samples + 1))[::-1]
    training = kept[usable[kept]]
    if training.size < MIN_WINDOWS:
        return None
    checked = np.flatnonzero(usable)
    every_kth = max(1, checked.size // CHECKED_WINDOWS)
    if every_kth > 1:  # one window in every k, its offset cycling through 0..k-1: every phase is checked
        picks = np.arange(0, checked.size - every_kth + 1, every_kth)
        checked = checked[picks + np.arange(picks.size) % every_kth]
    needed = np.union1d(kept, checked)  # the embeddings of these windows only
    embedded, _ = features(windows_of[needed], floor)
    at = {name: np.searchsorted(needed, rows) for name, rows in (("kept", kept), ("training", training),
                                                                  ("checked", checked))}  # fmt: skip
    location = np.median(embedded[at["training"]], axis=0)
    spread = 1.4826 * np.median(np.abs(embedded[at["training"]] - location), axis=0)
    points = embedded.shape[1] - 2
    spread[:points] = np.median(spread[:points])  # one unit for the sketch: distances between sketches stay W2
    spread = np.where(spread > 0, spread, np.maximum(np.abs(location), 1.0) * RESOLUTION)
    standard = (embedded - location) / spread
    # every kept position stays (its end time follows from the last one); one with too few samples is never near
    windows = np.where(usable[kept][:, None], standard[at["kept"]], np.inf).astype(np.float32)
    resolution = RESOLUTION * math.sqrt(windows.shape[1]) * max(float(np.abs(standard[at["training"]]).max()), 1.0)
    reference = NoveltyReference(
        windows, float(ends[kept[-1]]), location, spread, 0.0, samples, step, floor, resolution
    )
    distance = nearest(standard[at["checked"]], ends[checked], reference)
    found = np.isfinite(distance)
    distance, checked_ends = distance[found], ends[checked][found]
    reference.scale = history_scale(hourly_maxima(checked_ends, distance), distance, budget)
    return Learned(reference, hourly_maxima(checked_ends, relative(distance, reference.scale)))


def history_scale(blocks: Blocks, distance: np.ndarray, budget: float) -> float:
    """The distance the history's windows exceed ``budget`` times a day (0 when they are all alike)."""
    positive = distance[distance > 0]
    if positive.size == 0:
        return 0.0
    return calibrate(blocks, float(positive.min()), 1, budget).threshold


def relative(distance: np.ndarray, scale: float) -> np.ndarray:
    """Distances in units of the scale; a history whose windows were all alike makes any change infinitely
    novel (recorded as ``INFINITE_SCORE``) and no change 0."""
    if scale > 0:
        return np.minimum(distance / scale, INFINITE_SCORE)
    return np.where(distance > 0, INFINITE_SCORE, 0.0)


def scores(reference: NoveltyReference, windows: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The novelty score of each row of ``windows`` (``reference.samples`` values each, oldest first; NaN where
    missing) ending at ``ends``: NaN for a window with too few finite samples."""
    embedded, usable = features(np.atleast_2d(windows), reference.floor)
    standard = (embedded - reference.location) / reference.spread
    result = relative(nearest(standard, np.asarray(ends, dtype=np.float64), reference), reference.scale)
    return np.where(usable, result, np.nan)


def latest_score(
    reference: NoveltyReference | None, timestamps: np.ndarray, values: np.ndarray, end: float | None = None
) -> float | None:
    """The novelty score of the window ending at ``end`` (default: the last timestamp) in a read window
    (``timestamps`` ascending), or None without a reference or with too few samples in the window: the service's
    path, one window, remembered until the window's end moves (most score runs see no new sample)."""
    if reference is None or timestamps.size == 0:
        return None
    end = float(timestamps[-1]) if end is None else float(end)
    if reference.latest is not None and reference.latest[0] == end:
        return reference.latest[1]
    inside = (timestamps > end - (reference.samples - 0.5) * reference.step) & (timestamps <= end)
    reference.latest = (end, _one_window(reference, values[inside][-reference.samples :], end))
    return reference.latest[1]


def _one_window(reference: NoveltyReference, window: np.ndarray, end: float) -> float | None:
    """``scores`` of one window, without the batch's bookkeeping (the score job's cost per series)."""
    window = np.where(np.isfinite(window), window, np.nan)
    steps = np.abs(np.diff(window))
    steps = steps[~np.isnan(steps)]
    ordered = np.sort(window[~np.isnan(window)])
    count = ordered.size
    if count < min_finite(reference.samples):
        return None
    points = reference.windows.shape[1] - 2
    positions = np.clip((np.arange(points) + 0.5) / points * count - 0.5, 0.0, count - 1)
    median = 0.5 * float(ordered[(count - 1) // 2] + ordered[count // 2])
    embedded = np.empty(points + 2)
    embedded[:points] = np.interp(positions, np.arange(count), ordered)
    embedded[points] = math.log(float(np.mean(np.abs(ordered - median))) + reference.floor)
    embedded[points + 1] = math.log((float(steps.mean()) if steps.size else 0.0) + reference.floor)
    difference = reference.windows - (embedded - reference.location) / reference.spread
    with np.errstate(invalid="ignore"):
        squared = np.einsum("wk,wk->w", difference, difference)
    squared[np.isnan(squared)] = np.inf
    overlapping = (reference.samples - 0.5) * reference.step > end - reference.last_end
    if overlapping:  # only the latest training windows can share samples with a window after them
        ends = training_ends(reference)
        squared[np.abs(end - ends) < (reference.samples - 0.5) * reference.step] = np.inf
    distance = math.sqrt(max(float(squared.min()), 0.0)) if squared.size else math.inf
    if math.isinf(distance):
        return None
    distance = distance if distance > reference.resolution else 0.0
    return float(relative(np.array(distance), reference.scale))
