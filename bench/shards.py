"""Shard sizing benchmark: what one analyzer pod handles, measured end to end against a real local Prometheus.

    python3 bench/shards.py [--series 1000] [--model stl] [--workers 2] [--shards 1,2,4]

Backfills ``--series`` 28-day, 5-minute series, then for each shard count runs every shard's first refit (its
read of the whole window and its fits, in a pool of ``--workers`` processes, as one pod does) and score one after
another, and prints per shard: series owned, points read and their share of the single instance's, refit seconds
(of which reading from Prometheus) and score seconds. Each shard lists the target with one instant query and
pushes a label matcher into its reads (analyzer.service.partition), so a shard reads about its own share; from the
per-series read and fit costs it prints the shard count that keeps a refit within half of ``refit_every``, which is
how docs/deploy.md (Sharding) chooses ``shards``. Prints figures; asserts nothing. The table there:
``python3 bench/shards.py --series 1000``.
"""

from __future__ import annotations

import argparse
import math
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from analyzer.config import build_config
from analyzer.models.fitting import FitPool
from analyzer.prometheus.localprom import BackfillSeries, LocalPrometheus
from analyzer.prometheus.reader import PrometheusReader
from analyzer.service.pipeline import Analyzer
from analyzer.service.sharding import Shard
from analyzer.synthetic import generate

STEP = 300.0
DAYS = 28


def fleet(count: int, end: float) -> list[BackfillSeries]:
    series = []
    for i in range(count):
        data = generate(days=DAYS + 1, step=STEP, level=0.1 + 0.01 * (i % 50), seed=i, end=end)
        labels = {"job": f"svc-{i % 17}", "instance": f"10.0.{i // 250}.{i % 250}:8080"}
        series.append(BackfillSeries("bench_latency_seconds", labels, data.timestamps, data.values))
    return series


class TimedReader(PrometheusReader):
    """Adds up the time spent reading (HTTP, Prometheus' work, decoding, gridding)."""

    query_seconds = 0.0

    def read_matrix(self, *args, **kwargs) -> int:
        started = time.perf_counter()
        try:
            return super().read_matrix(*args, **kwargs)
        finally:
            self.query_seconds += time.perf_counter() - started


def run_shard(config, shard: Shard, workers: int, now: float) -> tuple[int, int, float, float, float]:
    """(series owned, points read, refit seconds, of which reading, score seconds)."""
    pool = FitPool(workers)
    reader = TimedReader(config.prometheus)
    analyzer = Analyzer(config, reader, pool=pool, shard=shard, clock=lambda: now)
    try:
        started = time.perf_counter()
        analyzer.refit(now)
        refit = time.perf_counter() - started
        read = reader.query_seconds
        started = time.perf_counter()
        snapshot = analyzer.score(now)
        score = time.perf_counter() - started
    finally:
        pool.close()
        analyzer.close()
    return len(snapshot.results), reader.points_read, refit, read, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--model", default="stl")
    parser.add_argument("--workers", type=int, default=2, help="fit processes per pod (the chart's fit_workers)")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--refit-every", type=float, default=3600.0)
    args = parser.parse_args()

    end = np.floor(1_767_571_200.0 / STEP) * STEP
    workdir = Path(tempfile.mkdtemp(prefix="perfsentinel-bench-shards-"))
    prometheus = LocalPrometheus(workdir, retention="400d")
    started = time.perf_counter()
    prometheus.backfill(fleet(args.series, end))
    print(f"backfilled {args.series} series x {DAYS + 1} days in {time.perf_counter() - started:.1f} s")
    with prometheus:
        config = build_config({
            "prometheus": {"url": prometheus.url, "timeout": "120s"},
            "schedule": {"fit_workers": args.workers},
            "targets": [{"name": "lat", "query": "bench_latency_seconds", "model": args.model, "history": f"{DAYS}d"}],
        })  # fmt: skip
        print(f"model {args.model}, {args.workers} fit processes per pod, shards run one after another\n")
        print(f"{'shards':>6} {'shard':>5} {'series':>7} {'points read':>12} {'share':>6} {'refit s':>8} "
              f"{'read s':>7} {'rest s':>7} {'score s':>8}")  # fmt: skip
        read_per_series, rest_per_series, single = [], [], None
        for count in [int(n) for n in args.shards.split(",")]:
            for index in range(count):
                owned, points, refit, read, score = run_shard(config, Shard(index, count), args.workers, end)
                single = single or points
                print(f"{count:>6} {index:>5} {owned:>7} {points:>12,} {points / single:>6.3f} {refit:>8.2f} "
                      f"{read:>7.2f} {refit - read:>7.2f} {score:>8.2f}")  # fmt: skip
                read_per_series.append(read / max(owned, 1))  # each shard reads about its own series
                rest_per_series.append((refit - read) / max(owned, 1))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    read_cost, fit_cost = float(np.median(read_per_series)), float(np.median(rest_per_series))
    budget = 0.5 * args.refit_every
    print(
        f"\nper pod first refit seconds ~= {(read_cost + fit_cost) * 1000:.0f} ms x series owned (read "
        f"{read_cost * 1000:.0f} ms, fit and the rest {fit_cost * 1000:.0f} ms with {args.workers} processes); "
        f"peak RSS of this process {rss:.0f} MiB"
    )
    print(f"shards for a first refit within half of refit_every={args.refit_every:.0f}s:")
    for fleet_size in (1_000, 10_000, 50_000, 100_000):
        print(f"  {fleet_size:>7,} series -> shards: {max(1, math.ceil((read_cost + fit_cost) * fleet_size / budget))}")


if __name__ == "__main__":
    main()
