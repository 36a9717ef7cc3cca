"""Notifications per series-day that the shipped alert rules start on generated series with no change in them.

    python bench/budget.py [--step 300] [--days 21] [--series 3] [--families gauss,counts] [--seed 0]
    python bench/budget.py --step 3600 --series 6     # hourly data, 28 days

Each series is written as a ``timestamp,value`` CSV and replayed with the ``perfsentinel backtest`` path
in-process (``analyzer.commands.backtest.read_input`` and ``backtest``, the CLI's default target, timezone and refit
cadence); its ``alert`` column marks the rows where a shipped alerting rule starts a notification. Only rows
with a fitted baseline (finite ``expected``) count. The first week of scoring is reported apart ("first week":
the record that calibrates the thresholds is still short, and the part it does not cover is filled with
in-sample scores); the other columns are the steady state after it. Per rule group (anomaly, novelty,
regression) a row counts once however many rules of the group start there, so the groups can add up to a little
more than the total. The fits of a series run in its own process (``FitPool(1)``), two series at a time.

Families (daily sinusoid of +-20%, level 100 unless noted; nothing injected): gauss (5% normal noise), student
(Student t, df 2.5, scale 5% of the level), ar1 (AR(1), rho 0.95 per step, 5% stationary sd), counts (Poisson
counts at 3-20 a step plus self-exciting bursts with Pareto(1.5) sizes, 30-minute decay), lowcount (Poisson,
mean 0.5 a step), sparse (gauss with 30-70% of the samples empty at random), regimes (gauss whose level switches
between 90 and 110 every 1-3 days). spiky (gauss plus isolated upward spikes of 5-10 sigma, one per two days on
average) holds real anomalies: its row is printed apart and left out of the maximum. Missing samples are rows
with an empty value, so the replay keeps the grid's step.

About 5 minutes at the defaults on 2 cores (24 series of 21 days at 5 minutes).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from analyzer.commands.backtest import RULE_EVALUATION_INTERVAL, backtest, read_input
from analyzer.commands.cli import backtest_target
from analyzer.detection import episodes
from analyzer.models.fitting import FitPool

DAY = 86400.0
START = pd.Timestamp("2024-01-01T00:00:00Z").timestamp()  # a Monday
LEVEL = 100.0
NOISE = 0.05  # relative to the level
DAILY = 0.2  # amplitude of the daily sinusoid, relative to the level
NULL_FAMILIES = ("gauss", "student", "ar1", "counts", "lowcount", "sparse", "regimes")
FAMILIES = (*NULL_FAMILIES, "spiky")
GROUPS = ("anomaly", "novelty", "regression")
WARM_UP_DAYS = 7.0  # pages in the first week of scoring are reported apart: the record is still short


def timestamps(days: float, step: float) -> np.ndarray:
    return START + step * np.arange(int(round(days * DAY / step)))


def daily(times: np.ndarray) -> np.ndarray:
    """1 + DAILY x sin, peaking mid-afternoon UTC."""
    return 1.0 + DAILY * np.sin(2 * np.pi * ((times % DAY) / DAY - 9.0 / 24.0))


def gauss(times: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    return LEVEL * daily(times) + LEVEL * NOISE * rng.standard_normal(times.size)


def student(times: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    return LEVEL * daily(times) + LEVEL * NOISE * rng.standard_t(2.5, times.size)


def ar1(times: np.ndarray, step: float, rng: np.random.Generator, rho: float = 0.95) -> np.ndarray:
    innovations = LEVEL * NOISE * np.sqrt(1 - rho**2) * rng.standard_normal(times.size)
    noise = np.empty(times.size)
    noise[0] = LEVEL * NOISE * rng.standard_normal()
    for i in range(1, times.size):
        noise[i] = rho * noise[i - 1] + innovations[i]
    return LEVEL * daily(times) + noise


def counts(times: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts at a daily rate of 3-20 a step, plus bursts: a few a day arrive on their own, each burst
    triggers more in proportion to the excitation it leaves (branching ratio about 0.6, so cascades end), and
    burst sizes are Pareto(1.5) (finite mean, infinite variance; capped at 100x the mean rate)."""
    base = 11.5 + 8.5 * np.sin(2 * np.pi * ((times % DAY) / DAY - 9.0 / 24.0))
    mean_rate, tau = 11.5, 1800.0
    decay = np.exp(-step / tau)
    immigrants = 4.0 * step / DAY  # bursts a step arriving on their own
    # children a step per unit of excitation: each burst of size m leaves about m tau / step of excitation summed
    # over steps; with mean size 3 x mean_rate that gives 0.6 children a burst
    per_excitation = 0.6 / (3.0 * mean_rate * tau / step)
    excitation = 0.0
    rates = np.empty(times.size)
    for i in range(times.size):
        excitation *= decay
        bursts = rng.poisson(immigrants + per_excitation * excitation)
        if bursts:
            excitation += float(np.minimum(mean_rate * (1.0 + rng.pareto(1.5, bursts)), 100 * mean_rate).sum())
        rates[i] = base[i] + excitation
    return rng.poisson(rates).astype(np.float64)


def lowcount(times: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(0.5 * (1.0 + 0.5 * (daily(times) - 1.0) / DAILY)).astype(np.float64)


def sparse(times: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    values = gauss(times, step, rng)
    values[rng.random(times.size) < rng.uniform(0.3, 0.7)] = np.nan
    return values


def regimes(times: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    """gauss around a level that switches between 90 and 110, staying 1-3 days (uniform) each time."""
    level = np.empty(times.size)
    at, high = times[0], bool(rng.integers(2))
    while at <= times[-1]:
        until = at + rng.uniform(1.0, 3.0) * DAY
        level[(times >= at) & (times < until)] = LEVEL * (1.1 if high else 0.9)
        at, high = until, not high
    return level * daily(times) + LEVEL * NOISE * rng.standard_normal(times.size)


def spiky(times: np.ndarray, step: float, rng: np.random.Generator) -> np.ndarray:
    """gauss plus isolated one-sample upward spikes of 5-10 sigma, one per two days on average."""
    values = gauss(times, step, rng)
    count = rng.poisson((times[-1] - times[0]) / DAY / 2.0)
    rows = rng.choice(times.size, size=min(count, times.size), replace=False)
    values[rows] += LEVEL * NOISE * rng.uniform(5.0, 10.0, rows.size)
    return values


GENERATORS: dict[str, Callable[[np.ndarray, float, np.random.Generator], np.ndarray]] = {
    "gauss": gauss, "student": student, "ar1": ar1, "counts": counts, "lowcount": lowcount, "sparse": sparse,
    "regimes": regimes, "spiky": spiky,
}  # fmt: skip


def generate(family: str, days: float, step: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    times = timestamps(days, step)
    return times, GENERATORS[family](times, step, np.random.default_rng(seed))


def group_of(rule: str) -> str:
    return next(group for group in GROUPS if group in rule.lower())


def shipped_defaults() -> tuple[object, str, float]:
    """What ``perfsentinel backtest`` uses without --config: the default target, UTC, hourly refits."""
    return backtest_target(argparse.Namespace(config=None, target=None, model=None, direction=None, refit_every=None))


def numeric_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The frame's number columns (the rules read no others; ``timestamp`` and ``verdict`` are text)."""
    return {name: frame[name].to_numpy(dtype=np.float64) for name in frame.columns
            if pd.api.types.is_numeric_dtype(frame[name])}  # fmt: skip


def count_pages(frame: pd.DataFrame, times: np.ndarray) -> dict[str, float]:
    """Scored days and onsets of the ``alert`` column, in the first ``WARM_UP_DAYS`` of scoring (the record
    that calibrates the thresholds is short) and after them (steady state), and per rule group after them
    (a row counts once per group however many of its rules start there)."""
    scored = np.isfinite(frame["expected"].to_numpy())
    if not scored.any():
        return {"days": 0.0, "warm_days": 0.0, "pages": 0, "warm_pages": 0, **dict.fromkeys(GROUPS, 0)}
    first, last = times[scored].min(), times[scored].max()
    warm = scored & (times < first + WARM_UP_DAYS * DAY)
    steady = scored & ~warm
    starts = episodes.rule_onsets(frame, times, interval=RULE_EVALUATION_INTERVAL)
    groups = {group: np.zeros(len(times), dtype=bool) for group in GROUPS}
    for rule, rows in starts.items():
        groups[group_of(rule)] |= rows
    alert = frame["alert"].to_numpy()
    return {"days": max(0.0, (last - first) / DAY - WARM_UP_DAYS), "warm_days": min(WARM_UP_DAYS, (last - first) / DAY),
            "pages": int(alert[steady].sum()), "warm_pages": int(alert[warm].sum()),
            **{group: int(rows[steady].sum()) for group, rows in groups.items()}}  # fmt: skip


def run_one(job: tuple[str, int, float, float, int]) -> dict[str, object]:
    family, index, days, step, seed = job
    times, values = generate(family, days, step, seed)
    started = time.perf_counter()
    target, timezone, every = shipped_defaults()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{family}-{index}.csv"
        labels = pd.to_datetime(times, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
        pd.DataFrame({"timestamp": labels, "value": values}).to_csv(path, index=False)
        replay = read_input(path)
    pool = FitPool(1)  # inline fits: this process is already one of the bench's workers
    try:
        frame = backtest(replay, target, timezone, every, pool)
    finally:
        pool.close()
    return {"family": family, "index": index, "seconds": time.perf_counter() - started,
            **count_pages(frame, replay.times)}  # fmt: skip


def per_day(count: float, days: float) -> float:
    return count / days if days > 0 else float("nan")


def table(results: list[dict[str, object]], families: list[str]) -> list[tuple[str, float]]:
    """Print one row per family; returns (family, steady-state pages per series-day) for the null families."""
    header = (f"{'family':<10}{'series':>7}{'first week':>12}{'|':>3}{'days':>7}{'pages':>7}{'/series-day':>13}"
              f"{'worst':>8}" + "".join(f"{group:>12}" for group in GROUPS))  # fmt: skip
    print(header)
    print("-" * len(header))
    rates = []
    for family in families:
        rows = [r for r in results if r["family"] == family]
        days, pages = sum(r["days"] for r in rows), sum(r["pages"] for r in rows)
        warm = per_day(sum(r["warm_pages"] for r in rows), sum(r["warm_days"] for r in rows))
        worst = max(per_day(r["pages"], r["days"]) for r in rows)
        rate = per_day(pages, days)
        name = family if family in NULL_FAMILIES else f"{family}*"
        line = f"{name:<10}{len(rows):>7}{warm:>12.3f}{'|':>3}{days:>7.0f}{pages:>7}{rate:>13.3f}{worst:>8.3f}"
        line += "".join(f"{per_day(sum(r[group] for r in rows), days):>12.3f}" for group in GROUPS)
        print(line)
        if family in NULL_FAMILIES:
            rates.append((family, rate))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=float, default=300.0, help="seconds between samples (default 300)")
    parser.add_argument("--days", type=float, help="history and evaluation together (default 21; 28 at >= 1 h)")
    parser.add_argument("--series", type=int, default=3, help="series per family (default 3)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="series replayed at a time (default 2)")
    args = parser.parse_args()
    families = [name.strip() for name in args.families.split(",") if name.strip()]
    unknown = sorted(set(families) - set(GENERATORS))
    if unknown:
        parser.error(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}")
    days = args.days or (28.0 if args.step >= 3600 else 21.0)
    target, timezone, every = shipped_defaults()
    jobs = [(family, i, days, args.step, args.seed * 1_000_003 + 1000 * FAMILIES.index(family) + i)
            for family in families for i in range(args.series)]  # fmt: skip
    print(f"{len(jobs)} series of {days:g} days at {args.step:g} s steps; backtest defaults: model {target.model}, "
          f"refit every {every:g} s, min_history {target.min_history / DAY:g} d, timezone {timezone}\n")  # fmt: skip
    started = time.perf_counter()
    with Pool(args.workers) as pool:
        results = pool.map(run_one, jobs, chunksize=1)
    wall = time.perf_counter() - started
    rates = table(results, families)
    if any(family not in NULL_FAMILIES for family in families):
        print("* holds real anomalies (isolated 5-10 sigma spikes): not a null, left out of the maximum")
    budget = getattr(target, "max_notifications_per_day", None)
    if rates:
        family, worst = max(rates, key=lambda item: item[1])
        configured = "not set" if budget is None else f"{budget:g}"
        print(f"\nmax steady-state pages per series-day over the null families: {worst:.3f} ({family}); "
              f"configured budget max_notifications_per_day: {configured}")  # fmt: skip
    print(f"{wall:.0f} s wall, {sum(r['seconds'] for r in results):.0f} s of backtests on {args.workers} workers")


if __name__ == "__main__":
    main()
