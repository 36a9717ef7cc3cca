"""Throughput benchmark of the vertical slice. Prints figures; asserts nothing.

    python3 bench/bench.py [--series 100] [--quick] [--history-days 28]

- refit seconds per series per model at 28 days x 5 minutes (one process; ``--history-days 14`` for what a
  default Prometheus keeps, where STL is daily with a weekend shape), and series/s with the process pool on all
  cores;
- score-only throughput (baseline predict + band + score per series, as the score job does);
- exposition render time for 10k and 100k time series, and for 10k and 100k analyzed series (15 time series each);
  the text /metrics serves, rendered once per analysis;
- reference residuals for the verdicts (``attach_reference``, after each fit) at 5 minutes, 1 minute and 10 s,
  where the last two are thinned to 1,000 residuals with block medians;
- the score records of 1,000 series (16 days of hourly maxima each, what the alert thresholds are calibrated
  from) written to and read from the baseline store, as each refit and each start do;
- peak RSS of this process and of the pool's workers.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from analyzer.config import build_target
from analyzer.detection.budget import ScoreRecord
from analyzer.detection.reference import attach_reference
from analyzer.models import FitContext, get_model
from analyzer.models.fitting import FitPool, FitRequest, default_workers, fit_one
from analyzer.results import OK, SeriesResult, Snapshot
from analyzer.series import Series
from analyzer.service.pipeline import Analyzer, SeriesState
from analyzer.state.store import BaselineStore
from analyzer.synthetic import generate
from analyzer.telemetry import NullTelemetry
from exporter.families import LabelCache
from exporter.server import render_snapshot

MODELS = ("profile", "stl", "mstl", "prophet")
CONTEXT = FitContext(step=300.0)


def requests_for(model: str, count: int, days: float) -> list[FitRequest]:
    out = []
    for seed in range(count):
        series = generate(days=days, seed=seed)
        out.append(FitRequest(str(seed), model, series.timestamps, series.values, CONTEXT))
    return out


def bench_fit(model: str, count: int, pool: FitPool, days: float) -> tuple[float, float]:
    batch = requests_for(model, count, days)
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


def render_results(count: int, rng: np.random.Generator) -> list[SeriesResult]:
    """Every field the service fills for a series without a regression, with full-precision values that differ
    per series (as real scores do: formatting such floats is most of the cost)."""
    values = rng.random((count, 8))
    return [
        SeriesResult("api_latency_p95", {"service": f"svc{i % 50}", "instance": f"host-{i}:9100"}, OK, "",
                     1.7e9, v[0], v[1], v[1] * 0.8, v[1] * 1.2, 2 * v[2], "stl", "weekly", drift_score=v[3] - 0.5,
                     verdict="none", severity=0, change_pct=10 * v[4] - 5, p_value=v[5], q_value=v[6],
                     effect_size=v[7] - 0.5, confidence=1 - v[6], baseline_version=3, baseline_age_seconds=1800.0,
                     baseline_reason="refresh", baseline_trained_from=1.6976e9, baseline_trained_to=1.7e9)
        for i, v in enumerate(values.tolist())
    ]  # fmt: skip


def bench_render(count: int) -> tuple[float, float, int, float]:
    """For ``count`` analyzed series: seconds for the first analysis (label sets rendered), seconds for the next
    one (same series, new values: the steady state, since the service renders once per analysis), the number
    of time series in the exposition, and its size in MB."""
    rng = np.random.default_rng(7)
    cache = LabelCache()
    started = time.perf_counter()
    render_snapshot(Snapshot(1.7e9, render_results(count, rng), []), cache)
    first = time.perf_counter() - started
    snapshot = Snapshot(1.7e9 + 60, render_results(count, rng), [])
    started = time.perf_counter()
    body = render_snapshot(snapshot, cache)
    steady = time.perf_counter() - started
    return first, steady, body.count(b"\n") - body.count(b"\n#"), len(body) / 1e6


def print_render(analyzed: int) -> None:
    first, steady, exposed, megabytes = bench_render(analyzed)
    print(f"{analyzed:>10,}{exposed:>12,}{megabytes:>8.0f}{steady:>14.3f}{first:>10.3f}")


def series_per_exposed(count: int = 100) -> float:
    return bench_render(count)[2] / count


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def bench_reference(step: float, repeats: int = 20) -> float:
    """Seconds per ``attach_reference`` of a 4-day STL fit at ``step`` (3 days of residuals kept)."""
    series = generate(days=4, step=step, seed=5)
    baseline = get_model("stl").fit(series.timestamps, series.values, FitContext(step=step))
    started = time.perf_counter()
    for _ in range(repeats):
        attach_reference(baseline, series.timestamps, series.values)
    return (time.perf_counter() - started) / repeats


def full_record(seed: int) -> ScoreRecord:
    """A record as a 5-minute series leaves it after 16 days: three statistics, every hour observed."""
    rng = np.random.default_rng(seed)
    record = ScoreRecord()
    for minute in range(0, 16 * 24 * 60, 5):
        values = {"anomaly": rng.exponential(), "drift": rng.normal(), "regression": -np.inf}
        record.add(minute * 60.0, values, {"anomaly": 3.0, "drift": 2.0, "regression": 10.0})
    return record


def bench_records(count: int = 1000) -> tuple[float, float, float]:
    """Milliseconds per series to store (JSON, compression, SQLite) and to load a record, and KB stored."""
    records = {f"s{i}": full_record(i % 10) for i in range(count)}
    with tempfile.TemporaryDirectory() as folder:
        store = BaselineStore(Path(folder) / "baselines.sqlite")
        started = time.perf_counter()
        store.save_records("t", {key: record.to_json() for key, record in records.items()}, 0.0)
        saved = time.perf_counter()
        loaded = [ScoreRecord.from_json(text) for text in store.records("t").values()]
        read = time.perf_counter()
        size = store.db.execute("SELECT sum(length(record)) FROM records").fetchone()[0]
        store.close()
    assert len(loaded) == count
    return 1000 * (saved - started) / count, 1000 * (read - saved) / count, size / count / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=100, help="series per model for the fit figures")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="fewer series, 10k exposition only")
    parser.add_argument("--history-days", type=float, default=28.0, help="history of each fit")
    args = parser.parse_args()
    count = 20 if args.quick else args.series
    workers = default_workers()
    pool = FitPool(workers)
    points = int(args.history_days * 288)
    print(f"fits at {args.history_days:g} days x 5 minutes ({points:,} points), {count} series per model, "
          f"pool of {workers} processes")  # fmt: skip
    print(f"{'model':<10}{'s/series (1 proc)':>20}{'series/s (pool)':>18}")
    for model in args.models.split(","):
        per_series, rate = bench_fit(model, count if model != "prophet" else min(count, 20), pool, args.history_days)
        print(f"{model:<10}{per_series:>20.4f}{rate:>18.1f}")
    pool.close()
    print(f"\nscore-only: {bench_score(20_000):,.0f} series/s (one thread)")
    print("reference residuals after a fit (3 days): " + ", ".join(
        f"{label} {1000 * bench_reference(step):.1f} ms" for label, step in (("5 min", 300.0), ("1 min", 60.0),
                                                                           ("10 s", 10.0))))  # fmt: skip
    save_ms, load_ms, kilobytes = bench_records()
    print(f"score record per series: store {save_ms:.2f} ms, load {load_ms:.2f} ms, {kilobytes:.1f} KB stored")
    per_series = series_per_exposed()
    print(
        f"\nexposition render ({per_series:.0f} time series per analyzed series; steady = each later analysis, "
        "first = new series)"
    )
    print(f"{'analyzed':>10}{'exposed':>12}{'MB':>8}{'steady s':>14}{'first s':>10}")
    sizes = (10_000,) if args.quick else (10_000, 100_000)
    for exposed in sizes:  # expositions of 10k and 100k time series
        print_render(round(exposed / per_series))
    for analyzed in sizes:  # and of 10k and 100k analyzed series
        print_render(analyzed)
    own, children = peak_rss_mib()
    print(f"\npeak RSS: this process {own:.0f} MiB, largest pool worker {children:.0f} MiB")


if __name__ == "__main__":
    main()
