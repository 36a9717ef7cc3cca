"""Production scale against a real Prometheus: N series x 28 days x 5 minutes, the service's own refit and score
passes, per phase seconds, points/s, ratio to the raw floor, peak RSS, and points read per series-hour in steady
state. Prints figures; asserts nothing.

    python3 bench/scale.py                      # N = 1,000 and 10,000
    python3 bench/scale.py --series 1000        # one size
    python3 bench/scale.py --big                # adds N = 50,000 (5 targets of 10,000)

Data: latency-like series with a daily and weekly shape and 3-6% noise, ending at a fixed Monday 00:00 UTC plus
one hour (so the steady hour has new samples), generated day by day and backfilled with promtool (one file per
day, two promtools at once); the TSDB is kept under ``--cache`` and reused by later runs (10,000 series take
about 10 minutes to backfill once).

Phases, each in a child process so its peak RSS is its own (default settings: model auto, fit workers = cores):

- **first refit**: the first refit pass at T0 (the whole 28-day window of every series read once, every series
  fitted) and the first score;
- **read floor** (up to 10,000 series): the same requests as the first refit's read, each downloaded uncompressed,
  parsed with ``json.loads`` and turned into numpy arrays (``np.array([v for _, v in values], dtype=float)``), in
  this process: what reading costs without Perf Sentinel. The ratio is the reader's time over the floor's;
- **steady hour**: then 60 minutes of the service's schedule (a score every minute, the refit pass every 15
  minutes), with the clock at T0 + 1 min ... T0 + 60 min: points read per series-hour, score runs that have a new
  sample for every series (every 5th minute) against those that do not, refit passes, RSS at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

STEP = 300.0
DAYS = 28
T0 = 1_793_577_600.0  # 2026-11-02 00:00 UTC, a Monday
TAIL = 3600.0  # data beyond T0, read during the steady hour
TARGET_SIZE = 10_000  # series per target (the default max_series)
FLOOR_UP_TO = 10_000  # series counts whose read floor is measured
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "perfsentinel-bench"


# ---------------------------------------------------------------- data
def labels_of(index: int) -> str:
    address = f"10.{index // 65536}.{index // 256 % 256}.{index % 256}:9100"
    return f'{{group="g{index // TARGET_SIZE}",job="svc-{index % 50}",instance="{address}"}}'


def day_file(day: int, count: int, path: Path) -> None:
    """One day of every series in OpenMetrics (samples in time order per series, as promtool needs them)."""
    start = max(day * 86400.0, T0 - DAYS * 86400.0)
    end = min((day + 1) * 86400.0, T0 + TAIL + 1)
    times = np.arange(math.ceil(start / STEP) * STEP, end, STEP)
    hour = (times % 86400.0) / 3600.0
    weekday = ((times // 86400.0) + 3) % 7
    shape = 1.0 + 0.3 * np.sin(2 * np.pi * (hour - 9.0) / 24.0) - np.where(weekday >= 5, 0.15, 0.0)
    stamps = [str(int(t)) for t in times]
    with open(path, "w") as handle:
        handle.write("# TYPE bench_latency_seconds gauge\n")
        for index in range(count):
            rng = np.random.default_rng([index, day])
            level = 0.05 + 0.01 * (index % 40)
            noise = 0.03 + 0.03 * ((index * 7919) % 100) / 100.0
            values = level * shape * (1.0 + rng.normal(0.0, noise, times.size))
            prefix = "bench_latency_seconds" + labels_of(index) + " "
            handle.write("".join(f"{prefix}{v:.6g} {t}\n" for v, t in zip(values.tolist(), stamps, strict=True)))
        handle.write("# EOF\n")


def tsdb(count: int, cache: Path) -> Path:
    """The backfilled data directory for ``count`` series, made once and kept under ``cache``."""
    data = cache / f"scale-{count}-{int(T0)}" / "data"
    done = data.parent / "complete"
    if done.exists():
        return data
    work = Path(tempfile.mkdtemp(prefix="scale-om-", dir=cache))
    days = range(int((T0 - DAYS * 86400.0) // 86400), int((T0 + TAIL) // 86400) + 1)
    started = time.monotonic()

    def one(day: int) -> None:
        path = work / f"day-{day}.om"
        day_file(day, count, path)
        result = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(path), str(data)],
                                capture_output=True, text=True)  # fmt: skip
        path.unlink()
        if result.returncode != 0:
            raise RuntimeError(result.stderr)

    data.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, days))
    work.rmdir()
    done.write_text("")
    print(f"  backfilled {count:,} series in {time.monotonic() - started:.0f} s", flush=True)
    return data


def start_prometheus(data: Path) -> tuple[subprocess.Popen, str]:
    from analyzer.prometheus.localprom import free_port, wait_http

    port = free_port()
    config = data.parent / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    process = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                                "--storage.tsdb.retention.time=4000d", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/-/ready", 300, process)
    return process, f"http://127.0.0.1:{port}"


# ---------------------------------------------------------------- the service, in a child process
def config_for(url: str, count: int):
    from analyzer.config import build_config

    groups = max(1, math.ceil(count / TARGET_SIZE))
    targets = [{"name": f"latency_g{g}", "query": f'bench_latency_seconds{{group="g{g}"}}', "kind": "latency"}
               for g in range(groups)]  # fmt: skip
    return build_config({"prometheus": {"url": url}, "targets": targets}, env={})


def rss_mib() -> tuple[float, float]:
    """(current, peak) RSS of this process in MiB."""
    status = Path("/proc/self/status").read_text()
    current = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return current / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def workers_peak_mib(pool) -> float:
    peaks = []
    for process in list(getattr(pool._executor, "_processes", {}).values()) if pool._executor else []:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")]
    return max(peaks, default=0.0)


def descendants_peak_mib() -> float:
    """Sum of the peak RSS of every process under this one (fit and assess workers, the forkserver): with the
    service's own peak, an upper bound of what a pod's memory limit counts (shared pages are counted twice)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pid, ppid = int(stat.parent.name), int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM"))
    return total


def assess_cpu_seconds(analyzer) -> float:
    """CPU seconds used so far by the score job's assess worker processes (analyzer.service.assessing)."""
    executor = analyzer.assessor._executor
    total = 0.0
    for process in list(executor._processes.values()) if executor else []:
        try:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class TimedReader:
    """Wraps the service's reader: seconds and ranges of each request, and the points decoded."""

    def __init__(self, reader) -> None:
        self.reader, self.seconds, self.ranges = reader, 0.0, []
        original = reader._read_chunk

        def timed(query, start, end, step):
            started = time.perf_counter()
            try:
                return original(query, start, end, step)
            finally:
                self.seconds += time.perf_counter() - started
                self.ranges.append((query, start, end))

        reader._read_chunk = timed


def child(url: str, count: int) -> dict:
    from analyzer.models.fitting import FitPool
    from analyzer.prometheus.reader import PrometheusReader
    from analyzer.service import heap
    from analyzer.service.pipeline import Analyzer

    config = config_for(url, count)
    reader = PrometheusReader(config.prometheus)
    timed = TimedReader(reader)
    pool = FitPool(config.schedule.fit_workers)
    clock = {"now": T0}
    analyzer = Analyzer(config, reader, pool=pool, clock=lambda: clock["now"])
    out: dict = {"series": count}
    started = time.perf_counter()
    analyzer.refit(T0)
    heap.settle()  # as the service's refit job does
    out["refit_s"] = time.perf_counter() - started
    out["refit_read_s"], out["refit_points"] = timed.seconds, reader.points_read
    out["refit_ranges"] = list(timed.ranges)
    started = time.perf_counter()
    snapshot = analyzer.score(T0)
    out["first_score_s"] = time.perf_counter() - started
    out["ok"] = sum(r.status == "ok" for r in snapshot.results)
    out["models"] = sorted({r.model for r in snapshot.results if r.model})
    out["first_rss_peak_mib"] = rss_mib()[1]
    out["first_workers_peak_mib"] = workers_peak_mib(pool)
    points, score_new, score_same, refits, score_cpu = reader.points_read, [], [], [], []
    for minute in range(1, 61):
        now = clock["now"] = T0 + 60.0 * minute
        if minute % 15 == 0:
            started = time.perf_counter()
            analyzer.refit(now)
            heap.settle()
            refits.append(time.perf_counter() - started)
        started, service_cpu, workers_cpu = time.perf_counter(), time.process_time(), assess_cpu_seconds(analyzer)
        analyzer.score(now)
        (score_new if minute % 5 == 0 else score_same).append(time.perf_counter() - started)
        if minute % 5 == 0:
            score_cpu.append((time.process_time() - service_cpu, assess_cpu_seconds(analyzer) - workers_cpu))
    out["steady_points_per_series_hour"] = (reader.points_read - points) / count
    out["score_new_s"], out["score_same_s"], out["refit_pass_s"] = score_new, score_same, refits
    out["score_new_cpu_s"] = [float(np.median(column)) for column in zip(*score_cpu, strict=True)]
    out["steady_rss_mib"], out["peak_rss_mib"] = rss_mib()
    out["workers_peak_mib"] = workers_peak_mib(pool)
    out["all_workers_peak_mib"] = descendants_peak_mib()
    pool.close()
    return out


# ---------------------------------------------------------------- the floor, in this process
def floor_seconds(url: str, ranges: list) -> tuple[float, int]:
    """Download (uncompressed) + json.loads + numpy conversion of the same requests as the reader made."""
    session = requests.Session()
    total, points = 0.0, 0
    for query, start, end in ranges:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{STEP:g}"}
        started = time.perf_counter()
        response = session.get(f"{url}/api/v1/query_range", params=params, headers={"Accept-Encoding": "identity"},
                               timeout=600)  # fmt: skip
        body = json.loads(response.content)
        for item in body["data"]["result"]:
            values = np.array([v for _, v in item["values"]], dtype=float)
            times = np.array([t for t, _ in item["values"]], dtype=float)
            points += values.size + 0 * times.size
        total += time.perf_counter() - started
        del body
    return total, points


# ---------------------------------------------------------------- report
def report(figures: dict, floor: float | None) -> None:
    n = figures["series"]
    refit, read = figures["refit_s"], figures["refit_read_s"]
    print(f"\n{n:,} series (models {', '.join(figures['models'])}; {figures['ok']:,} scored ok after the first pass)")
    print(
        f"  first refit pass      {refit:8.1f} s   of which reading {read:6.1f} s "
        f"({figures['refit_points'] / read / 1e6:.2f} M points/s), fitting and the rest {refit - read:6.1f} s"
    )
    if floor is not None:
        print(f"  read floor            {floor:8.1f} s   (download + json.loads + numpy)   reader / floor = "
              f"{read / floor:.2f}")  # fmt: skip
    print(f"  first score           {figures['first_score_s']:8.2f} s   ({n / figures['first_score_s']:,.0f} series/s)")
    print(f"  peak RSS first pass   {figures['first_rss_peak_mib']:8.0f} MiB (service), "
          f"{figures['first_workers_peak_mib']:.0f} MiB per fit worker")  # fmt: skip
    new, same = figures["score_new_s"], figures["score_same_s"]
    print(f"  score, new samples    {np.median(new):8.2f} s   median of {len(new)} runs "
          f"({n / np.median(new):,.0f} series/s, verdicts on)")  # fmt: skip
    service_cpu, workers_cpu = figures["score_new_cpu_s"]
    cores = (service_cpu + workers_cpu) / np.median(new)
    print(f"                        CPU per series {1000 * service_cpu / n:.3f} ms service + "
          f"{1000 * workers_cpu / n:.3f} ms assess workers; {cores:.2f} cores busy")  # fmt: skip
    print(f"  score, no new sample  {np.median(same):8.2f} s   median of {len(same)} runs "
          f"({n / np.median(same):,.0f} series/s)")  # fmt: skip
    print(f"  refit pass (1/4)      {np.median(figures['refit_pass_s']):8.1f} s   median of 4")
    print(f"  steady reads          {figures['steady_points_per_series_hour']:8.0f} points per series-hour")
    print(f"  RSS after the hour    {figures['steady_rss_mib']:8.0f} MiB (peak {figures['peak_rss_mib']:.0f} MiB), "
          f"fit workers {figures['workers_peak_mib']:.0f} MiB")  # fmt: skip
    pod = figures["peak_rss_mib"] + figures["all_workers_peak_mib"]
    print(
        f"  all processes         {pod:8.0f} MiB (service peak + every worker's peak: what a pod's limit counts, "
        "at most)"
    )


def measure(count: int, cache: Path) -> None:
    data = tsdb(count, cache)
    prometheus, url = start_prometheus(data)
    try:
        done = subprocess.run([sys.executable, __file__, "--child", url, str(count)], capture_output=True, text=True,
                              check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        # the floor creates a Python object per sample: 25 minutes and 30 GB of objects at 50,000 series
        floor = floor_seconds(url, figures["refit_ranges"])[0] if count <= FLOOR_UP_TO else None
        report(figures, floor)
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="1000,10000", help="comma-separated series counts")
    parser.add_argument("--big", action="store_true", help="also 50,000 series (5 targets of 10,000)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the backfilled TSDBs are kept")
    parser.add_argument("--child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        threading.current_thread().name = "scale-child"
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.series.split(",")] + ([50_000] if args.big else [])
    print(f"bench/scale.py: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    for count in counts:
        measure(count, args.cache)


if __name__ == "__main__":
    main()
