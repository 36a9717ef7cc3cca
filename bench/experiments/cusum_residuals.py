"""A CUSUM on Perf Sentinel's own residuals: how far a different change detector would move the accuracy targets.

    python bench/experiments/cusum_residuals.py [--null 450] [--steps 800] [--workers 2]

A trial, not the product: its result (not shipped) is in docs/experiments.md.

bench/cusum_bound.py gives the optimal detector with a perfect baseline. This script keeps the real baseline: it
generates the large samples of the accuracy section (``--null`` series without a step, 7 days each, seeds 1100...;
``--steps`` worse 10% steps and half as many worse 5% steps, 2 days each, seeds 5000..., as
``bench/verdict_sweep.py --seeds-from 5000`` does), refits the default baseline every 6 hours as that bench does,
and runs a one-sided CUSUM on the standardised residuals instead of the change-point split and test:

* z = (value / expected - 1) / s in the bad direction, clipped to +-4 (spikes), where s is the robust scale
  (1.4826 MAD) of the same ratio on the 3 days of history before each refit;
* S = max(0, S + z - k) with k = 2.5% (half the `minor` step) over the series' median s, a candidate when S > h;
* "product rules": a candidate also needs the median of the bad-direction deviation since S last was 0 to be
  at least 5% (the `minor` tier), and a verdict needs 3 consecutive candidate evaluations and clears after 3
  without one, as `persistence: 3` does.

It prints false verdicts per 1,000 series-days and recall (10% steps within 1 h, 5% steps within 3 h), overall
and at 3-4.5% / 4.5-6% noise, for a few thresholds h. The thresholds are chosen on these same series, so each
row is a point of the trade-off, not a calibrated setting. About 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))  # regression_harness
sys.path.insert(0, str(BENCH.parent))  # analyzer, from a checkout

from regression_harness import DAY, HOUR, bench_target, causal_baselines, make_case  # noqa: E402

from analyzer.models.base import robust_scale  # noqa: E402

REFIT_EVERY = 6 * HOUR
REFERENCE = 3 * DAY
CLIP = 4.0
DRIFT = 0.025  # k in relative units: half the 5% minor step
MINOR = 0.05
LIMITS = {10.0: HOUR, 5.0: 3 * HOUR}
# (threshold h, product rules): the plain CUSUM at three thresholds, then with the minor tier and persistence 3
SETTINGS = ((12.0, False), (14.0, False), (16.0, False), (10.0, True), (12.0, True), (14.0, True))


@dataclass
class Stream:
    """Standardised residuals of one generated series from its evaluation start, and what is true about it."""

    step_pct: float
    noise: float
    step_start: float | None
    times: np.ndarray
    deviation: np.ndarray  # value / expected - 1, in the bad direction
    scale: np.ndarray  # robust scale of that ratio on the reference before the refit in force


def residual_stream(job: tuple[int, float, float]) -> Stream:
    seed, step_pct, days = job
    case = make_case(seed, step_pct, True, days)
    target = bench_target(case)
    times, values = case.timestamps, case.values
    ratio, scale = np.full(len(times), np.nan), np.full(len(times), np.nan)
    for at, baseline in causal_baselines(case, target, REFIT_EVERY).items():
        rows = (times >= at) & (times < at + REFIT_EVERY)
        ratio[rows] = values[rows] / baseline.predict(times[rows]).expected
        reference = (times < at) & (times >= at - REFERENCE)
        scale[rows] = robust_scale(values[reference] / baseline.predict(times[reference]).expected - 1.0)
    bad = 1.0 if case.direction == "lower_is_better" else -1.0
    keep = times >= case.eval_from
    return Stream(step_pct, case.noise, case.step_start, times[keep], bad * (ratio[keep] - 1.0), scale[keep])


def verdict_onsets(stream: Stream, h: float, product_rules: bool) -> list[float]:
    """Times at which a verdict starts: S > h (and, with the product rules, a median deviation >= minor since S
    last was 0, held 3 evaluations; cleared after 3 evaluations without)."""
    persistence = 3 if product_rules else 1
    typical_scale = float(np.nanmedian(stream.scale))
    z = np.clip(stream.deviation / stream.scale, -CLIP, CLIP)
    statistic, since, run, quiet, active, onsets = 0.0, 0, 0, 0, False, []
    for row, value in enumerate(z):
        if not np.isfinite(value):
            continue
        statistic = max(0.0, statistic + value - DRIFT / typical_scale)
        since = row if statistic == 0.0 else since
        candidate = statistic > h and (not product_rules or _median_after(stream.deviation, since, row) >= MINOR)
        run = run + 1 if candidate else 0
        if not active and run >= persistence:
            active, quiet = True, 0
            onsets.append(float(stream.times[row]))
        elif active:
            quiet = 0 if candidate else quiet + 1
            active = quiet < persistence
    return onsets


def _median_after(deviation: np.ndarray, since: int, row: int) -> float:
    segment = deviation[since + 1 : row + 1]
    segment = segment[np.isfinite(segment)]
    return float(np.median(segment)) if segment.size else 0.0


def row(streams: list[Stream], h: float, product_rules: bool) -> str:
    false, days = {False: 0, True: 0}, {False: 0.0, True: 0.0}
    for s in (s for s in streams if s.step_start is None):
        false[s.noise >= 0.045] += len(verdict_onsets(s, h, product_rules))
        days[s.noise >= 0.045] += (s.times[-1] - s.times[0]) / DAY  # as bench/verdict_sweep.py counts them
    per_1000 = {noisy: 1000 * false[noisy] / max(days[noisy], 1e-9) for noisy in (False, True)}
    total = false[False] + false[True]
    rate = 1000 * total / (days[False] + days[True])
    cells = [f"{'minor 5% + persistence 3' if product_rules else 'plain'}, h = {h:g}",
             f"{total} = {rate:.1f} ({per_1000[False]:.1f} / {per_1000[True]:.1f})"]  # fmt: skip
    for size, limit in LIMITS.items():
        found = {False: [], True: []}
        for s in (s for s in streams if s.step_pct == size):
            after = [t for t in verdict_onsets(s, h, product_rules) if t >= s.step_start]
            found[s.noise >= 0.045].append(bool(after) and after[0] - s.step_start <= limit)
        hits = found[False] + found[True]
        cells.append(f"{sum(hits)}/{len(hits)} = {100 * np.mean(hits):.1f}% "
                     f"({100 * np.mean(found[False]):.1f} / {100 * np.mean(found[True]):.1f})")  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null", type=int, default=450)
    parser.add_argument("--steps", type=int, default=800, help="10%% steps (and half as many 5%% steps)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    jobs = [(1100 + i, 0.0, 7.0) for i in range(args.null)]
    jobs += [(5000 + i, 10.0, 2.0) for i in range(args.steps)] + [(5000 + i, 5.0, 2.0) for i in range(args.steps // 2)]
    with ProcessPoolExecutor(args.workers) as pool:
        streams = list(pool.map(residual_stream, jobs, chunksize=4))
    print("| CUSUM (k = 2.5%) | false verdicts per 1,000 series-days (3-4.5% / 4.5-6% noise) "
          "| 10% steps within 1 h (3-4.5% / 4.5-6%) | 5% steps within 3 h (3-4.5% / 4.5-6%) |")  # fmt: skip
    print("|---|---|---|---|")
    with ProcessPoolExecutor(args.workers) as pool:
        for line in pool.map(row, [streams] * len(SETTINGS), *zip(*SETTINGS, strict=True)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
