"""Helpers of bench/accuracy.py: generated series with ground truth, the product's causal replay, and peers
(Apache Otava, a plain PELT) run on the same series.

Every detector sees the same input. Perf Sentinel runs exactly as ``perfsentinel backtest`` does (refit on the
trailing history at a cadence, score and decide row by row). The peers are offline change-point methods with no
notion of seasonality, so they get the series divided by Perf Sentinel's baseline (``value / expected``, a
deseasonalised ratio around 1) and are run causally at checkpoints on the trailing ``PEER_WINDOW``.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.commands.backtest import Replay, verdict_columns
from analyzer.config import TargetConfig, build_target
from analyzer.detection import regression
from analyzer.detection.reference import attach_reference
from analyzer.detection.stats import severity_for
from analyzer.models import FitContext
from analyzer.models.base import FittedBaseline
from analyzer.models.fitting import FitRequest, fit_one
from analyzer.synthetic import generate, inject_drift, inject_gap, inject_spike, inject_step

STEP = 300.0
DAY = 86400.0
HOUR = 3600.0
HISTORY_DAYS = 28
PEER_WINDOW = 2 * DAY  # trailing data each peer run sees
PEER_RECENT = 6 * HOUR  # a peer "detects" a change point found in the last 6 hours of its window
MINOR = 5.0
GAP = 2 * HOUR
# level, daily amplitude, weekend dip (each drawn uniformly per series), then the noise from NOISE_RANGE
PARAMETER_RANGES = ((0.05, 50.0), (0.15, 0.4), (0.0, 0.2))
NOISE_RANGE = (0.03, 0.06)  # standard deviation of the multiplicative per-sample noise


@dataclass
class Case:
    """One generated series and what is true about it."""

    seed: int
    direction: str  # lower_is_better | higher_is_better
    step_pct: float  # signed size of the injected step in % of the level; 0: no step
    worse: bool  # the step is in the target's bad direction
    step_start: float | None
    eval_from: float
    eval_to: float
    noise: float = 0.0  # standard deviation of the multiplicative per-sample noise
    timestamps: np.ndarray = field(repr=False, default=None)
    values: np.ndarray = field(repr=False, default=None)


def make_case(
    seed: int, step_pct: float, worse: bool, eval_days: float, noise_range: tuple[float, float] = NOISE_RANGE
) -> Case:
    """Daily + weekly pattern, noise drawn from ``noise_range`` (3-6% by default), a few spikes, a 2-hour gap
    (not over the first 3 hours of a step), a slow drift of up to +-2% over the whole series, and (when
    ``step_pct``) a sustained step 12 h to ``eval_days - 1 d`` into the evaluation. The draws do not depend on
    the range, so a seed gives the same series shape at any noise range."""
    rng = np.random.default_rng(seed)
    direction = "lower_is_better" if seed % 2 == 0 else "higher_is_better"
    days = HISTORY_DAYS + eval_days
    level, amplitude, dip, noise = (float(rng.uniform(*bounds)) for bounds in (*PARAMETER_RANGES, noise_range))
    series = generate(days=days, seed=seed, level=level, daily_amplitude=amplitude, weekend_dip=dip, noise=noise)
    first = float(series.timestamps[0])
    eval_from = first + HISTORY_DAYS * DAY
    inject_drift(series, first, float(rng.uniform(-0.02, 0.02)))
    for at in rng.uniform(first, float(series.timestamps[-1]), size=int(days // 2)):
        inject_spike(series, float(np.floor(at / STEP) * STEP), float(rng.uniform(0.5, 2.0)))
    start = None
    signed = 0.0
    if step_pct:
        bad = 1.0 if direction == "lower_is_better" else -1.0
        signed = step_pct * (bad if worse else -bad)
        start = float(np.floor(rng.uniform(eval_from + 0.5 * DAY, eval_from + (eval_days - 1) * DAY) / STEP) * STEP)
        inject_step(series, start, signed / 100.0)
    gap = _gap_start(rng, eval_from, float(series.timestamps[-1]) - GAP, start)
    inject_gap(series, gap, gap + GAP)
    return Case(seed, direction, signed, worse, start, eval_from, float(series.timestamps[-1]), noise,
                series.timestamps, series.values)  # fmt: skip


def _gap_start(rng: np.random.Generator, first: float, last: float, step_start: float | None) -> float:
    """A gap anywhere in the evaluation, except over the 3 hours after a step or just before it: recall
    "within 1 hour at 5-minute resolution" needs the samples of that hour (a gap there is measured apart, by
    the unit tests of gaps)."""
    while True:
        gap = float(np.floor(rng.uniform(first, last) / STEP) * STEP)
        if step_start is None or not (step_start - GAP - HOUR < gap < step_start + 3 * HOUR):
            return gap


@dataclass
class Run:
    """Per-row output of Perf Sentinel on one case (from ``eval_from`` on)."""

    times: np.ndarray
    ratio: np.ndarray  # value / expected, the peers' input
    frame: pd.DataFrame  # verdict columns of analyzer.commands.backtest


def bench_target(case: Case, target_overrides: dict | None = None) -> TargetConfig:
    return build_target({"name": "bench", "query": "bench", "direction": case.direction,
                         **(target_overrides or {})}, {}, "bench")  # fmt: skip


def causal_baselines(case: Case, target: TargetConfig, refit_every: float) -> dict[float, FittedBaseline]:
    """Baselines refit every ``refit_every`` from the evaluation start on, each on the history before its refit
    time and with its regression reference attached, as ``perfsentinel backtest`` fits them."""
    times, values = case.timestamps, case.values
    context = FitContext(step=STEP, seasonality=target.seasonality, band_sigmas=target.band_sigmas)
    baselines = {}
    for at in np.arange(case.eval_from, case.eval_to, refit_every):
        history = (times < at) & (times >= at - target.history)
        outcome = fit_one(FitRequest(str(at), target.model, times[history], values[history], context))
        if outcome.baseline is not None:
            baselines[float(at)] = attach_reference(
                outcome.baseline, times[history], values[history], exclude_recent=target.regression_window
            )
    return baselines


def run_perfsentinel(case: Case, refit_every: float, target_overrides: dict | None = None) -> Run:
    target = bench_target(case, target_overrides)
    times, values = case.timestamps, case.values
    replay = Replay(pd.Series(times), times, values, STEP, times, values)
    baselines = causal_baselines(case, target, refit_every)
    frame = verdict_columns(replay, target, baselines, refit_every)
    expected = np.full(len(times), np.nan)
    for at, baseline in baselines.items():
        rows = (times >= at) & (times < at + refit_every)
        expected[rows] = baseline.predict(times[rows]).expected
    keep = times >= case.eval_from
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = values / expected
    return Run(times[keep], ratio[keep], frame[keep].reset_index(drop=True))


# ---------------------------------------------------------------- peers
def pelt(values: np.ndarray, penalty: float, min_size: int = 3) -> list[int]:
    """Plain PELT (Killick et al. 2012) with the Gaussian mean-shift cost (sum of squared deviations)."""
    n = values.size
    csum = np.concatenate(([0.0], np.cumsum(values)))
    csq = np.concatenate(([0.0], np.cumsum(values * values)))

    def cost(starts: np.ndarray, end: int) -> np.ndarray:
        length = end - starts
        total = csum[end] - csum[starts]
        return csq[end] - csq[starts] - total * total / length

    best = np.full(n + 1, np.inf)
    best[0] = -penalty
    last = np.zeros(n + 1, dtype=np.int64)
    candidates = np.array([0])
    for end in range(min_size, n + 1):
        usable = candidates[end - candidates >= min_size]
        if usable.size == 0:
            continue
        totals = best[usable] + cost(usable, end) + penalty
        pick = int(np.argmin(totals))
        best[end], last[end] = totals[pick], usable[pick]
        keep = best[usable] + cost(usable, end) <= best[end]
        candidates = np.concatenate((candidates[~np.isin(candidates, usable)], usable[keep], [end - min_size + 1]))
    points, end = [], n
    while end > 0:
        end = int(last[end])
        if end > 0:
            points.append(end)
    return sorted(points)


def pelt_change_points(window: np.ndarray) -> list[tuple[int, float]]:
    """(index, change % of the mean after vs before) with a BIC-like penalty 2 sigma^2 log n, sigma from the
    MAD of first differences (robust to the steps themselves)."""
    sigma = 1.4826 * float(np.median(np.abs(np.diff(window) - np.median(np.diff(window))))) / math.sqrt(2)
    if sigma <= 0:
        return []
    points = pelt(window, 2.0 * sigma * sigma * math.log(window.size))
    bounds = [0, *points, window.size]
    out = []
    for i, point in enumerate(points):
        before, after = window[bounds[i] : point], window[point : bounds[i + 2]]
        out.append((point, 100.0 * (after.mean() - before.mean()) / abs(before.mean())))
    return out


def peer_windows(run: Run, checkpoints: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """(checkpoint, times, ratio) of the trailing window at each checkpoint, NaN removed."""
    out = []
    for at in checkpoints:
        keep = (run.times > at - PEER_WINDOW) & (run.times <= at) & np.isfinite(run.ratio)
        out.append((float(at), run.times[keep], run.ratio[keep]))
    return out


def otava_change_points(windows: list[np.ndarray], python: str) -> list[list[tuple[int, float]]] | None:
    """Apache Otava's compute_change_points (window 50, p 0.001, min magnitude 5%) in its own environment."""
    payload = json.dumps([w.tolist() for w in windows])
    try:
        done = subprocess.run([python, "-c", OTAVA_WORKER], input=payload, capture_output=True, text=True,
                              timeout=3600, check=True)  # fmt: skip
    except subprocess.CalledProcessError as exc:
        print(f"otava failed: {exc.stderr[-500:]}", file=sys.stderr)
        return None
    except (OSError, subprocess.SubprocessError):
        return None
    return [[(int(i), float(c)) for i, c in found] for found in json.loads(done.stdout)]


OTAVA_WORKER = """
import json, sys
from otava.analysis import compute_change_points
out = []
for values in json.load(sys.stdin):
    if len(values) < 10:
        out.append([])
        continue
    found, _ = compute_change_points(values, window_len=50, max_pvalue=0.001, min_magnitude=0.05)
    out.append([(int(c.index), float(c.stats.forward_change_percent())) for c in found])
json.dump(out, sys.stdout)
"""


def peer_detections(
    windows: list[tuple[float, np.ndarray, np.ndarray]], found: list[list[tuple[int, float]]], direction: str
) -> list[tuple[float, float]]:
    """(checkpoint, change start) where a peer reports a worse change >= minor in the last ``PEER_RECENT``."""
    bad = 1.0 if direction == "lower_is_better" else -1.0
    out = []
    for (at, times, _), points in zip(windows, found, strict=True):
        recent = [(times[i], pct) for i, pct in points if i < times.size and times[i] > at - PEER_RECENT]
        hits = [t for t, pct in recent if bad * pct >= MINOR]
        if hits:
            out.append((at, float(max(hits))))
    return out


# ---------------------------------------------------------------- scoring
@dataclass
class Outcome:
    detector: str
    case: Case
    delay: float | None = None  # first detection after the true start (seconds)
    start_error: float | None = None
    tier: str | None = None  # reported tier 1 hour after the first detection (Perf Sentinel only)
    false_episodes: int = 0  # detections of a change that is not there (before the step or on no-step series)
    days: float = 0.0


def score_perfsentinel(case: Case, run: Run) -> Outcome:
    outcome = Outcome("perfsentinel", case, days=(case.eval_to - case.eval_from) / DAY)
    severity = run.frame["severity"].to_numpy()
    active = severity > 0
    onsets = np.flatnonzero(active & ~np.concatenate(([False], active[:-1])))
    truth = case.step_start if case.worse else None
    for onset in onsets:
        if truth is not None and run.times[onset] >= truth:
            outcome.delay = float(run.times[onset] - truth)
            start = run.frame["regression_start"].to_numpy()
            later = np.flatnonzero(run.times >= run.times[onset] + HOUR)
            at = int(later[0]) if later.size else onset
            if math.isfinite(start[at]):
                outcome.start_error = float(start[at] - truth)
            outcome.tier = run.frame["verdict"].iloc[at]
            break
        outcome.false_episodes += 1
    return outcome


def score_peer(name: str, case: Case, detections: list[tuple[float, float]]) -> Outcome:
    outcome = Outcome(name, case, days=(case.eval_to - case.eval_from) / DAY)
    truth = case.step_start if case.worse else None
    last_start = -math.inf
    for at, start in detections:
        if truth is not None and at >= truth and start >= truth - 2 * HOUR:
            outcome.delay = at - truth
            outcome.start_error = start - truth
            break
        if abs(start - last_start) > HOUR:
            outcome.false_episodes += 1
            last_start = start
    return outcome


def expected_tier(step_pct: float) -> str:
    return severity_for(abs(step_pct))


__all__ = ["Case", "Outcome", "make_case", "regression", "run_perfsentinel"]
