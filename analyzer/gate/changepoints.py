"""Change points in the mean of a sequence (one value per build, or residuals over time): where the level moves,
with a p-value for each move.

Split and merge, in the spirit of E-divisive and of Otava's split/merge, with a different test:

* **Split (candidates)**: seeded binary segmentation (Kovacs et al. 2020): the standardized CUSUM statistic of the
  mean is computed on a fixed set of intervals at every scale (lengths ``n / sqrt(2)^k``, overlapping by half),
  and the strongest split of any interval above ``threshold`` robust noise units becomes a candidate; intervals
  containing it are dropped and the next strongest is taken. Short intervals find a short bump (a regression
  that was fixed ten builds later) that one split of the whole history cannot see.
* **Merge (significance)**: every candidate is tested on the data between its two neighbours: the split is moved
  to the best position there (the maximum-likelihood location of one change) and the maximum of the standardized
  statistic over all positions gets a p-value that accounts for the search over positions (Siegmund's
  approximation for the maximum of a standardized CUSUM, with his discrete-time correction; within 10% of the
  simulated tail for 10 to 1,000 values). The noise is the pooled residual SD of the two sides (a Student t
  converted to the normal scale), inflated for lag-1 autocorrelation of those residuals (AR(1) effective sample
  size), so a slow wave or a periodic signal does not pass for a series of steps. The weakest candidate above
  ``alpha`` is removed and its neighbours are tested again, until every change point left has ``p <= alpha``.

Interior segments have at least ``min_size`` values: a lone outlier is not two change points. The last segment
may be shorter (``min_last``, 1 by default), so a gate can name a regression at the latest build.

Deterministic (no permutations, no random numbers): the same history always gives the same answer. About
5 ms for 200 values, 30 ms for 500 (``bench/builds.py`` prints it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from analyzer.detection.stats import lag1_autocorrelation

DEFAULT_ALPHA = 0.005
DEFAULT_THRESHOLD = 3.5  # candidate splits: standardized CUSUM in robust noise units
MAX_RELOCATIONS = 5
MIN_REFERENCE = 5  # values a level must hold to be the baseline a regression is measured from
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_NORMAL_UNDERFLOW = 38.0  # phi(38) underflows: the p-value is 0 in double precision


@dataclass(frozen=True)
class ChangePoint:
    """The level moves at ``index`` (the first value at the new level)."""

    index: int
    p_value: float  # of the scan between the neighbouring change points (or the ends)
    before: float  # mean of the segment before, back to the previous change point
    after: float  # mean of the segment after, up to the next change point

    @property
    def change_pct(self) -> float:
        """Raw change of the mean in % of the level before (positive: the value went up); NaN if that level is 0."""
        return (self.after - self.before) / abs(self.before) * 100.0 if self.before else math.nan


# ---------------------------------------------------------------- the scan statistic and its tail
def cusum_statistic(values: np.ndarray) -> np.ndarray:
    """|S_k - k/n S_n| / sqrt(k (n - k) / n) for splits k = 1 .. n-1 (left part of size k): the difference of the
    two means in units of the noise SD, times sqrt(k (n - k) / n), with the noise SD left out (= 1)."""
    n = values.size
    sums = np.cumsum(values - values.mean())[:-1]
    k = np.arange(1, n, dtype=np.float64)
    return np.abs(sums) / np.sqrt(k * (n - k) / n)


def _nu(x: np.ndarray) -> np.ndarray:
    """Siegmund's overshoot correction for a discrete-time random walk, nu(x) ~ exp(-0.583 x) for small x."""
    half = np.maximum(x, 1e-12) / 2.0
    cdf = special.ndtr(half)
    return (2.0 / (2.0 * half)) * (cdf - 0.5) / (half * cdf + np.exp(-half * half / 2.0) / _SQRT_2PI)


def scan_p_value(statistic: float, n: int, lo: int, hi: int) -> float:
    """P(max over splits lo <= k <= hi of the standardized CUSUM of n iid normal values >= statistic).

    Siegmund (1988): b phi(b) sum_k nu(b / sqrt(n t (1 - t))) / (n t (1 - t)), t = k / n, two-sided; never below
    the tail of one position and never above Bonferroni over the positions searched."""
    if hi < lo or not math.isfinite(statistic):
        return 1.0 if hi < lo or math.isnan(statistic) else 0.0
    if statistic >= _NORMAL_UNDERFLOW:
        return 0.0
    t = np.arange(lo, hi + 1, dtype=np.float64) / n
    spread = n * t * (1.0 - t)
    density = statistic * math.exp(-statistic * statistic / 2.0) / _SQRT_2PI
    approximation = density * float(np.sum(_nu(statistic / np.sqrt(spread)) / spread))
    single = 2.0 * float(special.ndtr(-statistic))
    return float(min(1.0, max(approximation, single), single * (hi - lo + 1)))


def _robust_sigma(values: np.ndarray) -> float:
    """The noise SD from first differences (MAD / sqrt 2): level shifts barely move it."""
    differences = np.diff(values)
    if differences.size == 0:
        return 0.0
    mad = float(np.median(np.abs(differences - np.median(differences))))
    sigma = 1.4826 * mad / math.sqrt(2.0)
    return sigma if sigma > 0 else float(np.std(differences)) / math.sqrt(2.0)


# ---------------------------------------------------------------- split: candidates from seeded intervals
def seeded_intervals(n: int, min_length: int) -> list[tuple[int, int]]:
    """[start, end) intervals of lengths n / sqrt(2)^k down to ``min_length``, each scale overlapping by half."""
    intervals = {(0, n)}
    depth = 1
    while (length := n / math.sqrt(2.0) ** depth) >= min_length:
        count = math.ceil(2.0 * n / length - 1.0)
        shift = (n - length) / max(count - 1, 1)
        intervals.update((round(i * shift), min(round(i * shift + length), n)) for i in range(count))
        depth += 1
    return sorted(intervals)


def _best_split(values: np.ndarray, start: int, end: int, min_left: int, min_right: int) -> tuple[int, float] | None:
    """The split of values[start:end] with the largest statistic, both sides at least as long as asked."""
    size = end - start
    first, last = min_left, size - min_right
    if last < first:
        return None
    statistic = cusum_statistic(values[start:end])[first - 1 : last]
    best = int(np.argmax(statistic))
    return start + first + best, float(statistic[best])


def _candidates(values: np.ndarray, threshold: float, min_size: int, min_last: int) -> list[int]:
    n = values.size
    sigma = _robust_sigma(values) or 1e-12 * max(abs(float(np.mean(values))), 1.0)
    strong = []
    for start, end in seeded_intervals(n, 2 * min_size):
        split = _best_split(values, start, end, min_size, min_last if end == n else min_size)
        if split is not None and split[1] / sigma > threshold:
            strong.append((split[1] / sigma, start, end, split[0]))
    strong.sort(reverse=True)
    chosen = []
    while strong:
        _, _, _, index = strong[0]
        chosen.append(index)
        strong = [s for s in strong if not s[1] < index < s[2]]
    return sorted(chosen)


# ---------------------------------------------------------------- merge: test each between its neighbours
def _test(values: np.ndarray, start: int, end: int, min_size: int, min_last: int) -> tuple[int, float] | None:
    """The best split of values[start:end] and the scan p-value of its statistic."""
    min_right = min_last if end == values.size else min_size
    split = _best_split(values, start, end, min_size, min_right)
    if split is None:
        return None
    index, statistic = split
    left, right = values[start:index], values[index:end]
    residuals = np.concatenate((left - left.mean(), right - right.mean()))
    dof = max(residuals.size - 2, 1)
    sigma = math.sqrt(float(residuals @ residuals) / dof)
    if sigma <= 0:
        return index, (0.0 if statistic > 0 else 1.0)
    rho = lag1_autocorrelation(residuals)
    t = statistic / (sigma * math.sqrt((1.0 + rho) / (1.0 - rho)))
    tail = float(special.stdtr(dof, -t))  # Student's t upper tail, accurate far out
    z = t if dof >= 1000 else (-float(special.ndtri(min(tail, 0.5))) if tail > 0 else math.inf)
    size = end - start
    return index, scan_p_value(z, size, min_size, size - min_right)


def find_change_points(
    values: np.ndarray,
    *,
    alpha: float = DEFAULT_ALPHA,
    threshold: float = DEFAULT_THRESHOLD,
    min_size: int = 2,
    min_last: int = 1,
) -> list[ChangePoint]:
    """Every change of the mean of ``values`` (finite, in order) with ``p <= alpha``, oldest first."""
    values = _checked(values)
    if values.size < min_size + min_last:
        return []
    robust = clipped(values, keep_last=min_last == 1)
    points = merge(robust, _candidates(robust, threshold, min_size, min_last), alpha, min_size, min_last)
    return _described(values, [(p.index, p.p_value) for p in points])


def clipped(values: np.ndarray, width: int = 5, limit: float = 5.0, keep_last: bool = True) -> np.ndarray:
    """Each value at most ``limit`` robust noise SDs from the median of the ``width`` values around it: a lone
    outlier cannot look like a short segment, a level shift of two or more values is kept. ``keep_last``: the ends
    are padded with their own value, so the latest value is never clipped (a gate may act on one build);
    otherwise they are mirrored, and a lone outlier at the end is clipped like any other."""
    if values.size < width:
        return values
    sigma = _robust_sigma(values)
    if sigma <= 0:
        return values
    half = width // 2
    padded = np.pad(values, half, mode="edge" if keep_last else "reflect")
    medians = np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1)
    return np.clip(values, medians - limit * sigma, medians + limit * sigma)


def _checked(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("values must be finite")
    return values


def merge(
    values: np.ndarray, points: list[int], alpha: float, min_size: int = 2, min_last: int = 1
) -> list[ChangePoint]:
    """Test every change point between its neighbours; remove the weakest above ``alpha`` and test its neighbours
    again, until all pass. Also how a stricter level is applied to change points found at a looser one."""
    values, points = _checked(values), sorted(points)
    cache: dict[tuple[int, int], tuple[int, float] | None] = {}  # a segment's test depends only on its bounds

    def tested() -> list[tuple[int, float]]:
        bounds = [0, *points, values.size]
        out = []
        for j, index in enumerate(points):
            key = (bounds[j], bounds[j + 2])
            if key not in cache:
                cache[key] = _test(values, *key, min_size, min_last)
            out.append(cache[key] or (index, 1.0))
        return out

    relocations = 0
    results: list[tuple[int, float]] = []
    while points:
        results = tested()
        weakest = max(range(len(points)), key=lambda j: results[j][1])
        if results[weakest][1] > alpha:
            del points[weakest]
            continue
        moved = sorted({index for index, _ in results})
        if moved == points or relocations >= MAX_RELOCATIONS:
            break
        points, relocations = moved, relocations + 1
    return _described(values, results if points else [])


def _described(values: np.ndarray, tested: list[tuple[int, float]]) -> list[ChangePoint]:
    best: dict[int, float] = {}
    for index, p_value in tested:
        best[index] = min(p_value, best.get(index, 1.0))
    indices = sorted(best)
    bounds = [0, *indices, values.size]
    return [
        ChangePoint(
            index, best[index], float(values[bounds[j] : index].mean()), float(values[index : bounds[j + 2]].mean())
        )
        for j, index in enumerate(indices)
    ]


# ---------------------------------------------------------------- what the latest value is part of
def worse_sign(direction: str, raw_change: float) -> float:
    """The sign that makes a raw change (after - before) positive when it is worse: for ``both`` every change is
    worse, so the sign of the change itself."""
    if direction == "lower_is_better":
        return 1.0
    if direction == "higher_is_better":
        return -1.0
    return 1.0 if raw_change >= 0 else -1.0


@dataclass(frozen=True)
class Regression:
    """The latest segment against the level before one of the change points."""

    point: int  # position in the change point list: the first change of the regression
    start: int  # index of its first value at the new level
    reference: tuple[int, int]  # [start, end) of the level before it
    recent: tuple[int, int]  # [start, end) of the latest segment
    change_pct: float  # worse-signed, of the means


def latest_regression(
    values: np.ndarray, points: list[ChangePoint], direction: str, min_reference: int = MIN_REFERENCE
) -> Regression | None:
    """The change the latest segment is part of: the latest level compared with the level before each change
    point, the worst of them (the most recent on a tie). Several small steps in a row add up: a creeping
    regression is the sum of its steps, starting at the first. A level held for fewer than ``min_reference``
    values is no baseline (coming back from a brief dip is not a regression). None when the latest level is not
    worse than any earlier one."""
    if not points:
        return None
    bounds = [0, *(p.index for p in points), values.size]
    recent = (bounds[-2], bounds[-1])
    latest = float(values[recent[0] : recent[1]].mean())
    worst: Regression | None = None
    for j in range(len(points) - 1, -1, -1):
        reference = (bounds[j], bounds[j + 1])
        if reference[1] - reference[0] < min_reference:
            continue
        level = float(values[reference[0] : reference[1]].mean())
        raw = latest - level
        change = worse_sign(direction, raw) * raw / abs(level) * 100.0 if level else math.nan
        if math.isfinite(change) and change > 0 and (worst is None or change > worst.change_pct):
            worst = Regression(j, points[j].index, reference, recent, change)
    return worst


def start_of_latest_shift(values: np.ndarray, points: list[ChangePoint], direction: str) -> int | None:
    """Where the latest level began, for a sequence centred on its baseline (0 = as expected): the start of the
    latest segment, moved back over earlier segments while they were at least half-way to the latest level in the
    worse direction (a shift that began earlier and grew stays one shift). None when the latest segment is not worse
    than the baseline."""
    bounds = [0, *(p.index for p in points), values.size]
    levels = [float(values[a:b].mean()) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    sign = worse_sign(direction, levels[-1])
    latest = sign * levels[-1]
    if not latest > 0:
        return None
    first = len(levels) - 1
    while first > 0 and sign * levels[first - 1] >= latest / 2:
        first -= 1
    return bounds[first]
