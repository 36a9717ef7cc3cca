"""Accuracy of regression verdicts on generated series with ground truth, beside Apache Otava and a plain PELT.

    python bench/accuracy.py [--per-cell 20] [--null 60] [--workers 2] [--otava-python /path/to/venv/bin/python]

Cases: for each step size (2, 5, 10, 20, 50 %) and direction (bad, good) ``--per-cell`` series with a step
12-24 h into a 2-day evaluation; plus ``--null`` series without a step over ``--null-days``. Targets alternate
latency (lower_is_better) and throughput (higher_is_better). Prints one table; figures are described in
the README (Regression verdicts). Apache Otava is not a dependency of Perf Sentinel: install it in its own venv
(``python -m venv /tmp/otava-venv && /tmp/otava-venv/bin/pip install apache-otava``; it pins numpy 2.2) and pass
its python; without it the Otava rows are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from regression_harness import (  # noqa: E402
    DAY,
    HOUR,
    NOISE_RANGE,
    Case,
    Outcome,
    expected_tier,
    make_case,
    otava_change_points,
    peer_detections,
    peer_windows,
    pelt_change_points,
    run_perfsentinel,
    score_peer,
    score_perfsentinel,
)

SIZES = (2.0, 5.0, 10.0, 20.0, 50.0)


def checkpoints(case: Case) -> np.ndarray:
    """Hourly over the evaluation; every 15 minutes from 1 h before to 6 h after a step."""
    hourly = np.arange(case.eval_from + HOUR, case.eval_to, HOUR)
    if case.step_start is None:
        return hourly
    dense = np.arange(case.step_start - HOUR, case.step_start + 6 * HOUR, 900.0)
    return np.unique(np.concatenate((hourly, dense)))


def evaluate(args: tuple[Case, float, str | None]) -> list[Outcome]:
    case, refit_every, otava_python = args
    run = run_perfsentinel(case, refit_every)
    outcomes = [score_perfsentinel(case, run)]
    windows = peer_windows(run, checkpoints(case))
    found = [pelt_change_points(ratio) if ratio.size > 10 else [] for _, _, ratio in windows]
    outcomes.append(score_peer("pelt", case, peer_detections(windows, found, case.direction)))
    if otava_python:
        otava = otava_change_points([ratio for _, _, ratio in windows], otava_python)
        if otava is not None:
            outcomes.append(score_peer("otava", case, peer_detections(windows, otava, case.direction)))
    return outcomes


def cases(per_cell: int, null: int, null_days: float) -> list[Case]:
    out = []
    seed = 1000
    for size in SIZES:
        for worse in (True, False):
            for _ in range(per_cell):
                out.append(make_case(seed, size, worse, 2.0))
                seed += 1
    for _ in range(null):
        out.append(make_case(seed, 0.0, True, null_days))
        seed += 1
    return out


def pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "    -"


def minutes(values: list[float]) -> str:
    return f"{np.median(values) / 60:6.0f}" if values else "     -"


def table(outcomes: list[Outcome]) -> str:
    lines = ["detector      step  n   rec@1h  rec@3h  rec@24h  delay_med_min  |start_err|_med_min  tier_ok"]
    detectors = list(dict.fromkeys(o.detector for o in outcomes))
    for detector in detectors:
        mine = [o for o in outcomes if o.detector == detector]
        for size in SIZES:
            cell = [o for o in mine if o.case.worse and abs(o.case.step_pct) == size]
            delays = [o.delay for o in cell if o.delay is not None]
            errors = [abs(o.start_error) for o in cell if o.start_error is not None]
            tiers = [o for o in cell if o.tier is not None]
            tier_ok = sum(o.tier == expected_tier(o.case.step_pct) for o in tiers)
            lines.append(
                f"{detector:12s} {size:4.0f}% {len(cell):3d}  {pct(sum(d <= HOUR for d in delays), len(cell))} "
                f" {pct(sum(d <= 3 * HOUR for d in delays), len(cell))}  {pct(len(delays), len(cell))}"
                f"  {minutes(delays):>13s}  {minutes(errors):>19s}  "
                f"{pct(tier_ok, len(tiers)) if detector == 'perfsentinel' else '    -'}"
            )
    lines += ["", *noise_table([o for o in outcomes if o.detector == "perfsentinel"])]
    lines.append("")
    lines.append("detector      false verdicts per 1,000 series-days (no-step series)   verdicts on improvements")
    for detector in detectors:
        mine = [o for o in outcomes if o.detector == detector]
        null = [o for o in mine if o.case.step_start is None]
        days = sum(o.days for o in null)
        false = sum(o.false_episodes for o in null)
        good = [o for o in mine if o.case.step_start is not None and not o.case.worse]
        flagged = sum(o.false_episodes > 0 for o in good)
        rate = 1000.0 * false / days if days else float("nan")
        lines.append(f"{detector:12s}  {rate:8.2f}  ({false} in {days:.0f} series-days)"
                     f"{'':22s}{pct(flagged, len(good))} of {len(good)}")  # fmt: skip
    return "\n".join(lines)


def noise_table(mine: list[Outcome], noise_range: tuple[float, float] = NOISE_RANGE) -> list[str]:
    """Perf Sentinel's recall against the per-sample noise of the series (the lower and the upper half of
    ``noise_range``): how much of a miss is the data."""
    lines = ["perfsentinel by noise   steps >= 10%: rec@1h    5% steps: rec@3h    false verdicts / 1,000 days"]
    middle = sum(noise_range) / 2
    for low, high in ((noise_range[0], middle), (middle, noise_range[1])):
        band = [o for o in mine if low <= o.case.noise < high]
        big = [o for o in band if o.case.worse and abs(o.case.step_pct) >= 10]
        five = [o for o in band if o.case.worse and abs(o.case.step_pct) == 5]
        null = [o for o in band if o.case.step_start is None]
        days = sum(o.days for o in null)
        rate = 1000.0 * sum(o.false_episodes for o in null) / days if days else float("nan")
        hit1 = sum(o.delay is not None and o.delay <= HOUR for o in big)
        hit3 = sum(o.delay is not None and o.delay <= 3 * HOUR for o in five)
        band_name = f"{100 * low:.3g}-{100 * high:.3g}%"
        lines.append(f"noise {band_name:<16} {pct(hit1, len(big))} of {len(big):3d}"
                     f"        {pct(hit3, len(five))} of {len(five):2d}       {rate:8.2f} ({days:.0f} d)")  # fmt: skip
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-cell", type=int, default=20)
    parser.add_argument("--null", type=int, default=60)
    parser.add_argument("--null-days", type=float, default=7.0)
    parser.add_argument("--refit-every", type=float, default=HOUR, help="seconds (product default 3600)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--otava-python", default="/tmp/otava-venv/bin/python")
    args = parser.parse_args()
    otava = args.otava_python if Path(args.otava_python).exists() else None
    if otava is None:
        print(f"apache-otava: {args.otava_python} not found, Otava rows skipped", file=sys.stderr)
    work = [(case, args.refit_every, otava) for case in cases(args.per_cell, args.null, args.null_days)]
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for number, result in enumerate(pool.map(evaluate, work, chunksize=1), 1):
            outcomes.extend(result)
            print(f"\r{number}/{len(work)} series", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    print(table(outcomes))
    print(f"\n{len(work)} series, {time.perf_counter() - started:.0f} s with {args.workers} workers; "
          f"refit every {args.refit_every / HOUR:g} h; {DAY / 300:.0f} samples per day")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
