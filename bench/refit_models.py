"""Refit cost per model at 28 days x 5 minutes (8,064 points per series), in the service's process pool.

    python3 bench/refit_models.py [--series 40] [--workers 2] [--models prophet,stl,profile]

For each model: fits ``--series`` generated series (daily + weekly shape, noise, one step) through FitPool as a
refit pass does, and prints the mean and median seconds per fit (inside a worker: one core), the pass throughput
in series per second on ``--workers`` cores, the peak RSS of the pool's workers and of this process, and how many
fits failed or fell back. Also the cost of storing the baselines (SQLite, JSON) and of loading them at start.
Prints figures; asserts nothing. The table of docs/performance.md:
``python3 bench/refit_models.py --series 60 --workers 2``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

# this file is named prophet.py: keep its folder off the path, or ``import prophet`` would find it
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from analyzer.models import FitContext  # noqa: E402
from analyzer.models.fitting import FitPool, FitRequest  # noqa: E402
from analyzer.models.prophet import ProphetOptions  # noqa: E402
from analyzer.state.store import BaselineStore  # noqa: E402
from analyzer.synthetic import generate, inject_step  # noqa: E402
from analyzer.telemetry import NullTelemetry  # noqa: E402

DAY = 86400.0


def requests(count: int, model: str) -> list[FitRequest]:
    out = []
    for seed in range(count):
        series = generate(days=28, step=300.0, seed=seed, level=0.1 + 0.01 * seed)
        inject_step(series, series.timestamps[-1] - (5 + seed % 10) * DAY, 0.1 * (seed % 3))
        out.append(FitRequest(str(seed), model, series.timestamps, series.values, FitContext(300.0),
                              ProphetOptions()))  # fmt: skip
    return out


def worker_peak_rss_mib(pool: FitPool) -> float:
    """The largest VmHWM (peak resident set) among the pool's live worker processes."""
    peak = 0
    executor = pool._executor
    for pid in list(getattr(executor, "_processes", {}) or {}):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024.0


def bench_model(model: str, count: int, workers: int) -> tuple[list, dict]:
    batch = requests(count, model)
    pool = FitPool(workers)
    list(pool.fit_all(batch[:workers], 300.0, NullTelemetry()))  # worker start-up and imports are not a refit
    started = time.perf_counter()
    outcomes = list(pool.fit_all(batch, 300.0, NullTelemetry()))
    wall = time.perf_counter() - started
    rss = worker_peak_rss_mib(pool) if workers > 1 else 0.0
    pool.close()
    seconds = [o.seconds for o in outcomes if o.baseline is not None]
    figures = {
        "model": model, "series": count, "mean_s": statistics.mean(seconds) if seconds else float("nan"),
        "median_s": statistics.median(seconds) if seconds else float("nan"), "series_per_s": count / wall,
        "wall_s": wall, "worker_peak_rss_mib": rss, "failed": sum(o.baseline is None for o in outcomes),
        "fallbacks": sum(bool(o.note) for o in outcomes),
    }  # fmt: skip
    return outcomes, figures


def bench_store(outcomes: list) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        store = BaselineStore(Path(tmp) / "baselines.sqlite")
        started = time.perf_counter()
        for outcome in outcomes:
            store.touch_series("bench", outcome.key, {"i": outcome.key}, 0.0)
            store.save("bench", outcome.key, outcome.baseline, fingerprint="-", quality={}, reason="bench",
                       created_at=0.0)  # fmt: skip
        saved = time.perf_counter() - started
        started = time.perf_counter()
        loaded = store.active("bench")
        load = time.perf_counter() - started
        size = (Path(tmp) / "baselines.sqlite").stat().st_size + sum(p.stat().st_size for p in Path(tmp).glob("*-wal"))
        return {"save_ms_per_series": 1000 * saved / len(outcomes), "load_ms_per_series": 1000 * load / len(loaded),
                "kib_per_series": size / 1024 / len(outcomes)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--models", default="prophet,stl,profile")
    args = parser.parse_args()
    print(f"28 days x 5 min = 8064 points per series; {args.workers} worker processes")
    print(f"{'model':<8} {'series':>6} {'mean s/fit':>10} {'median':>8} {'series/s':>9} {'wall s':>7} "
          f"{'worker peak RSS MiB':>19} {'failed':>6} {'fallbacks':>9}  store: save/load per series")  # fmt: skip
    for model in args.models.split(","):
        outcomes, f = bench_model(model, args.series, args.workers)
        store = bench_store([o for o in outcomes if o.baseline is not None])
        print(f"{f['model']:<8} {f['series']:>6} {f['mean_s']:>10.3f} {f['median_s']:>8.3f} {f['series_per_s']:>9.2f} "
              f"{f['wall_s']:>7.1f} {f['worker_peak_rss_mib']:>19.0f} {f['failed']:>6} {f['fallbacks']:>9}  "
              f"{store['save_ms_per_series']:.1f} / {store['load_ms_per_series']:.1f} ms, "
              f"{store['kib_per_series']:.1f} KiB")  # fmt: skip
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak RSS of this process (the service side: requests, outcomes, store): {own:.0f} MiB")


if __name__ == "__main__":
    main()
