"""A quicker accuracy check of the regression verdicts than bench/accuracy.py, for comparing settings.

    python bench/verdict_sweep.py [--null 150] [--steps 16] [--set persistence=4 ...]

Runs Perf Sentinel (as ``perfsentinel backtest`` does, refit every 6 h) on ``--null`` generated series without a
step (7 days each, seeds 1100...) and on ``--steps`` worse steps of 5% and of 10% (2 days each, seeds 1000,
1002, ...), with the target keys given by ``--set`` (YAML values), and prints the false verdicts per 1,000
series-days, recall of 10% steps within 1 h and of 5% steps within 3 h split by noise (accuracy.py's table),
every delay, and the seeds with false verdicts. No peers, so it takes about 7 minutes on 2 cores at the defaults.
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import noise_table  # noqa: E402
from regression_harness import DAY, HOUR, Outcome, make_case, run_perfsentinel, score_perfsentinel  # noqa: E402

REFIT_EVERY = 6 * HOUR
LIMITS = {5.0: 3 * HOUR, 10.0: HOUR}  # the recall targets: 5% within 3 h, 10% within 1 h


def evaluate(job: tuple[int, float, float], overrides: dict) -> Outcome:
    seed, step_pct, days = job
    case = make_case(seed, step_pct, True, days)
    return score_perfsentinel(case, run_perfsentinel(case, REFIT_EVERY, overrides))


def jobs(null: int, steps: int) -> list[tuple[int, float, float]]:
    return [(1100 + i, 0.0, 7.0) for i in range(null)] + [
        (1000 + 2 * i, size, 2.0) for size in LIMITS for i in range(steps)
    ]


def report(outcomes: list[Outcome]) -> None:
    """accuracy.py's table by noise, plus the overall false-verdict rate, every delay and the flagged seeds."""
    nulls = [o for o in outcomes if o.case.step_start is None]
    false, days = sum(o.false_episodes for o in nulls), sum(o.days for o in nulls)
    print(f"false verdicts: {false} in {days:.0f} series-days = {1000 * false / max(days, 1):.1f} per 1,000")
    print("\n".join(noise_table(outcomes)))
    for size, limit in LIMITS.items():
        group = [o for o in outcomes if o.case.step_pct == size]
        delays = ", ".join(f"{o.case.noise:.1%}: {'-' if o.delay is None else f'{o.delay / 60:.0f}'}" for o in group)
        found = sum(o.delay is not None and o.delay <= limit for o in group)
        print(f"{size:g}% steps within {limit / HOUR:g} h: {found} of {len(group)}; noise: delay in minutes: {delays}")
    flagged = [f"seed {o.case.seed} ({o.case.noise:.1%})" for o in outcomes if o.false_episodes]
    print("false verdicts on:", ", ".join(flagged) or "none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null", type=int, default=150)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a target key")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.set)}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(partial(evaluate, overrides=overrides), jobs(args.null, args.steps)))
    print(f"settings: {overrides or 'defaults'}; refit every {REFIT_EVERY / HOUR:g} h; {DAY / 300:.0f} samples/day")
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
