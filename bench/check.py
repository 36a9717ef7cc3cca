"""Benchmark of ``perfsentinel check``: 50 targets x 20 series against a local Prometheus. Prints figures;
asserts nothing (the requirement is < 30 s for the check).

    python3 bench/check.py [--targets 50] [--series 20] [--regressed 0.05] [--keep DIR]

Data: 7 days at 5-minute resolution plus the last hour at 15 s per series (the candidate window), backfilled
with promtool before Prometheus starts (backfill time is printed but is not part of the check). A fraction of the
series (``--regressed``) gets a +30% step 40 minutes before the end.

Measured: the whole ``perfsentinel check`` run in-process (window mode, now-7d:now-1h vs now-1h:now), split into
reading + statistics (Checker.run) and writing the four reports (plots for the 30 worst regressed series), with
the default Mann-Whitney test and with Welch's t-test; and the failing series against the ground truth (true and
false positives). The table of docs/performance.md (CI gate): ``python3 bench/check.py`` and ``... --stored``.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from analyzer.commands.cli import parser
from analyzer.config import load_config
from analyzer.gate.check import Checker
from analyzer.gate.checkcmd import check_options
from analyzer.gate.reports import write_reports
from analyzer.gate.reports.build import from_check
from analyzer.models.fitting import FitPool
from analyzer.prometheus.localprom import BackfillSeries, LocalPrometheus
from analyzer.prometheus.reader import PrometheusReader

END = 1_767_571_200.0  # 2026-01-05 00:00 UTC
HISTORY, HISTORY_STEP, RECENT_STEP = 7 * 86400, 300.0, 15.0


def make_series(
    targets: int, per_target: int, regressed: float, seed: int = 0
) -> tuple[list[BackfillSeries], set[tuple[str, str]]]:
    rng = np.random.default_rng(seed)
    history = np.arange(END - HISTORY, END - 3600, HISTORY_STEP)
    recent = np.arange(END - 3600, END + RECENT_STEP, RECENT_STEP)
    times = np.concatenate((history, recent))
    daily = 0.1 * np.sin(2 * np.pi * (times % 86400) / 86400)
    series, hits = [], set()
    for t in range(targets):
        for s in range(per_target):
            level = rng.uniform(0.05, 0.5)
            values = level * (1 + daily + 0.05 * rng.standard_normal(times.size))
            if rng.random() < regressed:
                values[times >= END - 2400] *= 1.3
                hits.add((f"t{t}", f"s{s}"))
            series.append(
                BackfillSeries("bench_latency_seconds", {"target": f"t{t}", "series": f"s{s}"}, times, values)
            )
    return series, hits


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), so figures can be read apart from other load on the host."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_check(
    config_path: Path, report_dir: Path, extra: list[str], truth: set[tuple[str, str]], prometheus_pid: int
) -> dict[str, float]:
    args = parser().parse_args(
        [
            "check",
            "--config",
            str(config_path),
            "--now",
            "2026-01-05T00:00:00Z",
            "--candidate",
            "now-1h:now",
            *extra,
        ]
    )
    config = load_config(args.config)
    started, cpu, prometheus_cpu = time.perf_counter(), time.process_time(), cpu_seconds(prometheus_pid)
    options = check_options(args, END)
    pool = FitPool(config.schedule.fit_workers) if options.mode == "stored" else None
    try:
        result = Checker(config, PrometheusReader(config.prometheus), options, pool).run()
    finally:
        if pool is not None:
            pool.close()
    checked, checked_cpu = time.perf_counter(), time.process_time()
    checked_prometheus_cpu = cpu_seconds(prometheus_pid)
    write_reports(from_check(result), report_dir, None)
    written, written_cpu = time.perf_counter(), time.process_time()
    counts = {v: result.count(v) for v in ("fail", "warn", "undecided", "pass")}
    flagged = {(s.target, s.labels["series"]) for s in result.series if s.verdict == "fail"}
    counts["true_positives"], counts["false_positives"] = len(flagged & truth), len(flagged - truth)
    return {
        "check_s": checked - started,
        "reports_s": written - checked,
        "total_s": written - started,
        "check_cpu_s": checked_cpu - cpu,  # this process (all threads; fit workers not counted)
        "prometheus_cpu_s": checked_prometheus_cpu - prometheus_cpu,
        "reports_cpu_s": written_cpu - checked_cpu,
        "exit_code": result.exit_code,
        "series": len(result.series),
        "load_average": os.getloadavg()[0],
        **counts,
    }


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--targets", type=int, default=50)
    cli.add_argument("--series", type=int, default=20)
    cli.add_argument("--regressed", type=float, default=0.05)
    cli.add_argument("--keep", type=Path, help="work directory to keep (default: a temporary one)")
    cli.add_argument("--stored", action="store_true", help="also time stored mode (fits 1,000 STL baselines)")
    args = cli.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="perfsentinel-bench-check-"))
    series, hits = make_series(args.targets, args.series, args.regressed)
    samples = sum(s.timestamps.size for s in series)
    prometheus = LocalPrometheus(workdir / "prometheus")
    prometheus.workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prometheus.backfill(series)
    print(f"backfill: {len(series)} series, {samples:,} samples in {time.perf_counter() - started:.1f} s")
    targets = [
        {"name": f"t{t}", "query": f'bench_latency_seconds{{target="t{t}"}}', "kind": "latency"}
        for t in range(args.targets)
    ]
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump({"prometheus": {"url": "http://placeholder:1"}, "targets": targets}))
    with prometheus:
        config_path.write_text(yaml.safe_dump({"prometheus": {"url": prometheus.url}, "targets": targets}))
        print(f"{args.targets} targets x {args.series} series, {len(hits)} with a +30% step (ground truth)")
        runs = [
            ("window, mannwhitney (default)", "default", ["--baseline", "now-7d:now-1h"]),
            ("window, welch", "welch", ["--baseline", "now-7d:now-1h", "--test", "welch"]),
            ("window, shift:1d,2d,3d,7d", "shift", ["--baseline", "shift:1d,2d,3d,7d"]),
        ]
        if args.stored:
            runs.append(("stored, fitted here on 6d", "stored", ["--baseline", "stored", "--history", "6d"]))
        for label, name, extra in runs:
            figures = run_check(config_path, workdir / f"report-{name}", extra, hits, prometheus.process.pid)
            print(
                f"check [{label}]: "
                + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {rss:.0f} MiB; reports in {workdir}")


if __name__ == "__main__":
    main()
