"""Pure statistics for regression verdicts: compare a recent window with a reference window.

Used by the service (``analyzer.detection.regression``) and by the CI gate (``perfsentinel check``). Nothing here knows
about Prometheus, models or configuration.

Conventions
-----------
* ``direction`` is the target's: ``lower_is_better`` (latency: a rise is worse), ``higher_is_better``
  (throughput: a fall is worse) or ``both`` (any change is worse).
* Every "worse-signed" number (``change_pct``, ``ci_low``/``ci_high``, ``effect_size``) is positive when the
  recent window is worse than the reference. For ``both`` the sign of the raw shift is kept in ``shift`` and
  the worse-signed numbers are its absolute value (the CI is that of ``|shift|``'s direction).
* The p-value is one-sided toward "worse" for a one-sided direction (an improvement is never significant) and
  two-sided for ``both``.

Why Mann-Whitney by default: latency residuals are skewed and carry spikes; the rank test keeps its false
alarm rate under heavy tails where Welch's t-test does not, and it loses only ~5% efficiency on normal data.
Its shift estimate is the Hodges-Lehmann estimator (median of all pairwise differences) with the
distribution-free Moses confidence interval, so estimate, interval and test agree.

Autocorrelation: samples of a time series are not independent, which makes every textbook p-value too
small. ``autocorrelation`` (the lag-1 autocorrelation of the residuals, see ``lag1_autocorrelation``)
deflates the sample sizes to ``n * (1 - rho) / (1 + rho)`` (AR(1) effective sample size) for the p-value
and the interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy import stats as st

from analyzer.options import TESTS, SeverityThresholds  # noqa: F401 (re-exported)

DIRECTIONS = ("lower_is_better", "higher_is_better", "both")
DEFAULT_TEST = "mannwhitney"
MIN_SAMPLES = 5  # per window, after removing NaN
MAX_PAIRS = 50_000  # Hodges-Lehmann thins the reference to evenly spaced quantiles beyond this many pairs

SEVERITIES = ("none", "minor", "significant", "critical")
SEVERITY_LEVELS = {name: level for level, name in enumerate(SEVERITIES)}


class InsufficientData(ValueError):
    """A window has too few finite samples to compare; ``str()`` says which."""


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing a recent window with a reference window."""

    test: str  # mannwhitney | welch | ks
    p_value: float  # one-sided toward worse (two-sided for direction both)
    effect_size: float  # Hedges' g, worse-signed
    change_pct: float  # shift in % of |expected_level|, worse-signed; NaN when expected_level is 0
    ci_low: float  # confidence interval of change_pct (worse-signed), at the confidence level asked
    ci_high: float
    shift: float  # raw shift of recent vs reference in the data's unit (recent - reference), unsigned by direction
    n_reference: int
    n_recent: int
    effective_n_reference: float
    effective_n_recent: float

    @property
    def worse(self) -> bool:
        """The point estimate says the recent window is worse."""
        return self.change_pct > 0 if math.isfinite(self.change_pct) else self.effect_size > 0


def lag1_autocorrelation(values: np.ndarray) -> float:
    """Lag-1 autocorrelation of the ranks of the finite values in order (Spearman's, as the default test is a
    rank test), clipped to [0, 0.95] (negative is treated as none).

    Why ranks: a few bursts dominate Pearson's estimate and pull it to ~0 while the bulk of the residuals moves
    slowly, so the test took every sample as independent. On NAB's spike and network-byte series that made
    p-values of 1e-8 out of hour-long wiggles of the baseline (66 of the regression alerts' 91 false positives
    there came from four such files). The rank correlation is mapped back to the Gaussian scale
    (rho = 2 sin(pi rho_s / 6)), so on Gaussian residuals the estimate, and with it the verdicts, stay as they
    were with Pearson's."""
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size < 3:
        return 0.0
    ranks = st.rankdata(finite)
    centred = ranks - ranks.mean()
    denominator = float(np.dot(centred, centred))
    if denominator <= 0:
        return 0.0
    rank_rho = float(np.dot(centred[:-1], centred[1:])) / denominator
    rho = 2.0 * math.sin(math.pi * rank_rho / 6.0)  # the Gaussian correlation with this rank correlation
    return min(max(rho, 0.0), 0.95)


def effective_size(n: int, autocorrelation: float) -> float:
    rho = min(max(autocorrelation, 0.0), 0.95)
    return max(2.0, n * (1.0 - rho) / (1.0 + rho))


def hedges_g(reference: np.ndarray, recent: np.ndarray) -> float:
    """(mean recent - mean reference) / pooled SD, with the small-sample correction J = 1 - 3 / (4 df - 1)."""
    n1, n2 = reference.size, recent.size
    pooled = ((n1 - 1) * reference.var(ddof=1) + (n2 - 1) * recent.var(ddof=1)) / (n1 + n2 - 2)
    difference = float(recent.mean() - reference.mean())
    if pooled <= 0:
        return 0.0 if difference == 0 else math.copysign(math.inf, difference)
    correction = 1.0 - 3.0 / (4.0 * (n1 + n2) - 9.0)
    return difference / math.sqrt(pooled) * correction


def _clean(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size < MIN_SAMPLES:
        raise InsufficientData(f"{name} window has {array.size} finite samples, need {MIN_SAMPLES}")
    return array


def _alternative(direction: str) -> str:
    """scipy's alternative for "recent compared with reference" that means worse."""
    return {"lower_is_better": "greater", "higher_is_better": "less"}.get(direction, "two-sided")


def _deflate_p(p_value: float, alternative: str, factor: float) -> float:
    """Re-express a p-value with its z-statistic scaled by ``factor`` = sqrt(effective n / n) <= 1."""
    if factor >= 1.0 or not math.isfinite(p_value):
        return p_value
    if alternative == "two-sided":
        z = -special.ndtri(p_value / 2.0)
        return float(min(1.0, 2.0 * special.ndtr(-z * factor)))
    return float(special.ndtr(special.ndtri(p_value) * factor))


def _test_p_value(reference: np.ndarray, recent: np.ndarray, test: str, alternative: str) -> float:
    if test == "welch":
        return float(st.ttest_ind(recent, reference, equal_var=False, alternative=alternative).pvalue)
    if test == "mannwhitney":
        return mann_whitney_p(recent, reference, alternative)
    if test == "ks":
        # scipy's "less" alternative for ks_2samp(recent, reference) means the CDF of recent lies below that of
        # reference, i.e. recent is stochastically greater; so the names swap relative to the other tests.
        swapped = {"greater": "less", "less": "greater"}.get(alternative, alternative)
        return float(st.ks_2samp(recent, reference, alternative=swapped, method="asymp").pvalue)
    raise ValueError(f"unknown test {test!r}; expected one of {', '.join(TESTS)}")


def average_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ranks from 1 with ties averaged (scipy's rankdata "average"), and the size of every group of ties."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    sizes = np.diff(np.append(starts, values.size))
    average = starts + (sizes + 1) / 2.0  # 1-based mean rank of each group
    ranks = np.empty(values.size)
    ranks[order] = np.repeat(average, sizes)
    return ranks, sizes


def mann_whitney_p(x: np.ndarray, y: np.ndarray, alternative: str) -> float:
    """The p-value of scipy.stats.mannwhitneyu(x, y, alternative, method="asymptotic") (tie-corrected normal
    approximation with continuity correction), without scipy's per-call validation and dispatch, which cost
    ~1 ms of the score job's 1.5 ms per series; tests/test_stats.py checks both agree."""
    n1, n2 = x.size, y.size
    ranks, ties = average_ranks(np.concatenate((x, y)))
    u1 = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    u2 = n1 * n2 - u1
    u, factor = {"greater": (u1, 1.0), "less": (u2, 1.0)}.get(alternative, (max(u1, u2), 2.0))
    n = n1 + n2
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties))
    spread = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    if spread == 0:
        return 1.0 if u - n1 * n2 / 2.0 - 0.5 <= 0 else 0.0
    z = (u - n1 * n2 / 2.0 - 0.5) / spread
    return float(min(max(factor * special.ndtr(-z), 0.0), 1.0))


def _welch_interval(reference: np.ndarray, recent: np.ndarray, n1: float, n2: float, level: float) -> tuple:
    shift = float(recent.mean() - reference.mean())
    v1, v2 = reference.var(ddof=1) / n1, recent.var(ddof=1) / n2
    se = math.sqrt(v1 + v2)
    if se == 0:
        return shift, shift, shift
    df = (v1 + v2) ** 2 / (v1**2 / max(n1 - 1, 1) + v2**2 / max(n2 - 1, 1))
    half = float(st.t.ppf(0.5 + level / 2.0, df)) * se
    return shift, shift - half, shift + half


def _hodges_lehmann_interval(reference: np.ndarray, recent: np.ndarray, n1: float, n2: float, level: float) -> tuple:
    """Median of pairwise differences (recent - reference) with the Moses interval using effective sizes."""
    if reference.size * recent.size > MAX_PAIRS:
        keep = max(MIN_SAMPLES, MAX_PAIRS // recent.size)
        reference = np.sort(reference)[np.linspace(0, reference.size - 1, keep).round().astype(np.int64)]
    differences = (recent[:, None] - reference[None, :]).ravel()
    total = differences.size
    z = float(special.ndtri(0.5 + level / 2.0))  # st.norm.ppf without its dispatch
    # rank of the lower bound in the effective-size null distribution, rescaled to the actual pair count
    k_effective = n1 * n2 / 2.0 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12.0)
    k = min(max(int(math.floor(k_effective / (n1 * n2) * total)), 0), (total - 1) // 2)
    middle = sorted({k, (total - 1) // 2, total // 2, total - 1 - k})
    ranked = np.partition(differences, middle)
    shift = 0.5 * float(ranked[(total - 1) // 2] + ranked[total // 2])
    return shift, float(ranked[k]), float(ranked[total - 1 - k])


def compare_windows(
    reference: Sequence[float] | np.ndarray,
    recent: Sequence[float] | np.ndarray,
    expected_level: float,
    direction: str = "both",
    test: str = DEFAULT_TEST,
    *,
    autocorrelation: float = 0.0,
    confidence_level: float = 0.95,
) -> Comparison:
    """Compare ``recent`` with ``reference`` (e.g. residuals of the last hour vs the baseline's training
    residuals) and express the shift in % of ``expected_level`` (the baseline's expected value).

    Raises ``InsufficientData`` when a window has fewer than ``MIN_SAMPLES`` finite values and ``ValueError``
    on an unknown test or direction. Deterministic: no resampling.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {', '.join(DIRECTIONS)}")
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; expected one of {', '.join(TESTS)}")
    reference, recent = _clean(reference, "reference"), _clean(recent, "recent")
    n1 = effective_size(reference.size, autocorrelation)
    n2 = effective_size(recent.size, autocorrelation)
    alternative = _alternative(direction)
    factor = math.sqrt(min(n1 / reference.size, n2 / recent.size))
    p_value = _deflate_p(_test_p_value(reference, recent, test, alternative), alternative, factor)
    interval = _welch_interval if test == "welch" else _hodges_lehmann_interval
    shift, low, high = interval(reference, recent, n1, n2, confidence_level)
    sign = _worse_sign(direction, shift)
    low, high = sorted((sign * low, sign * high))
    scale = 100.0 / abs(expected_level) if expected_level and math.isfinite(expected_level) else math.nan
    return Comparison(
        test=test,
        p_value=1.0 if math.isnan(p_value) else p_value,
        effect_size=sign * hedges_g(reference, recent),
        change_pct=sign * shift * scale,
        ci_low=low * scale,
        ci_high=high * scale,
        shift=shift,
        n_reference=int(reference.size),
        n_recent=int(recent.size),
        effective_n_reference=n1,
        effective_n_recent=n2,
    )


def _worse_sign(direction: str, shift: float) -> float:
    if direction == "lower_is_better":
        return 1.0
    if direction == "higher_is_better":
        return -1.0
    return -1.0 if shift < 0 else 1.0


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values), same order as given. NaN stays NaN and is not
    counted among the tests. Reject at FDR ``alpha`` where ``q <= alpha``."""
    p = np.asarray(p_values, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    if finite.size == 0:
        return q
    order = finite[np.argsort(p[finite], kind="stable")]
    m = finite.size
    ranked = p[order] * m / np.arange(1, m + 1)
    q[order] = np.minimum(1.0, np.minimum.accumulate(ranked[::-1])[::-1])
    return q


def severity_for(change_pct: float, thresholds: SeverityThresholds | None = None) -> str:
    """The tier of a worse-signed change in %: none below ``minor`` (and for NaN or an improvement)."""
    thresholds = thresholds or SeverityThresholds()
    if math.isnan(change_pct):
        return "none"
    if change_pct >= thresholds.critical:
        return "critical"
    if change_pct >= thresholds.significant:
        return "significant"
    if change_pct >= thresholds.minor and change_pct > 0:
        return "minor"
    return "none"
