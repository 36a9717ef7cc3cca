"""Throughput benchmark of the vertical slice. Prints figures; asserts nothing.

    python3 bench/bench.py [--series 100] [--quick]

- refit seconds per series per model at 28 days x 5 minutes (one process), and series/s with the process pool
  on all cores;
- score-only throughput (baseline predict + band + score per series, as the score job does);
- exposition render time for 10k and 100k series (the text /metrics serves, rendered once per analysis);
- peak RSS of this process and of the pool's workers.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from analyzer.config import build_target
from analyzer.fitting import FitPool, FitRequest, default_workers, fit_one
from analyzer.models import FitContext
from analyzer.pipeline import Analyzer, SeriesState
from analyzer.results import OK, SeriesResult, Snapshot
from analyzer.series import Series
from analyzer.synthetic import generate
from analyzer.telemetry import NullTelemetry
from exporter.server import render_snapshot

MODELS = ("profile", "stl", "mstl", "prophet")
CONTEXT = FitContext(step=300.0)


def requests_for(model: str, count: int) -> list[FitRequest]:
    out = []
    for seed in range(count):
        series = generate(days=28, seed=seed)
        out.append(FitRequest(str(seed), model, series.timestamps, series.values, CONTEXT))
    return out


def bench_fit(model: str, count: int, pool: FitPool) -> tuple[float, float]:
    batch = requests_for(model, count)
    sample = batch[: max(3, count // 10)]
    started = time.perf_counter()
    for request in sample:
        fit_one(request)
    per_series = (time.perf_counter() - started) / len(sample)
    list(pool.fit_all(batch[:2], 600, NullTelemetry()))  # warm the workers (imports) before timing
    started = time.perf_counter()
    outcomes = list(pool.fit_all(batch, 600, NullTelemetry()))
    rate = len(batch) / (time.perf_counter() - started)
    failed = sum(o.baseline is None for o in outcomes)
    if failed:
        print(f"  ({failed} of {len(batch)} {model} fits failed)")
    return per_series, rate


def bench_score(count: int) -> float:
    target = build_target({"name": "latency", "query": "q", "kind": "latency"}, {}, "bench")
    history = generate(days=28, seed=1)
    baseline = fit_one(FitRequest("k", "stl", history.timestamps, history.values, CONTEXT)).baseline
    state = SeriesState({"service": "x"}, baseline=baseline, reason="")
    analyzer = Analyzer.__new__(Analyzer)  # only the per-series scoring path is timed
    now = float(history.timestamps[-1]) + 300
    recent = [Series({"service": f"s{i}"}, np.array([now - 300, now]), np.array([0.2, 0.21])) for i in range(count)]
    started = time.perf_counter()
    for series in recent:
        Analyzer._score_series(analyzer, target, series, state)
    return count / (time.perf_counter() - started)


def bench_render(count: int) -> tuple[float, float]:
    results = [
        SeriesResult("api_latency_p95", {"service": f"svc{i % 50}", "instance": f"host-{i}:9100"}, OK, "",
                     1.7e9, 0.2, 0.21, 0.1, 0.3, 0.33, "stl", "weekly", drift_score=0.4, verdict="none",
                     severity=0, change_pct=1.2, p_value=0.41, q_value=0.8, effect_size=0.1, confidence=0.2,
                     baseline_version=3, baseline_age_seconds=1800.0, baseline_reason="refresh",
                     baseline_trained_from=1.6976e9, baseline_trained_to=1.7e9)
        for i in range(count)
    ]  # every field the service fills for a series without a regression  # fmt: skip
    snapshot = Snapshot(1.7e9, results, [])
    started = time.perf_counter()
    body = render_snapshot(snapshot)
    return time.perf_counter() - started, len(body) / 1e6


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100, help="series per model for the fit figures")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="fewer series, 10k exposition only")
    args = parser.parse_args()
    count = 20 if args.quick else args.series
    workers = default_workers()
    pool = FitPool(workers)
    print(f"fits at 28 days x 5 minutes (8,064 points), {count} series per model, pool of {workers} processes")
    print(f"{'model':<10}{'s/series (1 proc)':>20}{'series/s (pool)':>18}")
    for model in args.models.split(","):
        per_series, rate = bench_fit(model, count if model != "prophet" else min(count, 20), pool)
        print(f"{model:<10}{per_series:>20.4f}{rate:>18.1f}")
    pool.close()
    print(f"\nscore-only: {bench_score(20_000):,.0f} series/s (one thread)")
    for size in (10_000,) if args.quick else (10_000, 100_000):
        seconds, megabytes = bench_render(size)
        print(f"exposition render, {size:,} series: {seconds:.3f} s ({megabytes:.1f} MB)")
    own, children = peak_rss_mib()
    print(f"\npeak RSS: this process {own:.0f} MiB, largest pool worker {children:.0f} MiB")


if __name__ == "__main__":
    main()
