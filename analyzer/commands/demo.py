"""``perfsentinel demo``: five weeks of generated 5-minute metrics with daily and weekly seasonality and a
latency regression in one service, backfilled into a local Prometheus, analyzed once, printed.

The work directory is only ever cleaned of what the demo itself wrote there: a new or empty directory is claimed
with a marker file, and a later run deletes only ``DEMO_ENTRIES`` inside a directory that carries the marker. An
existing non-empty directory without the marker is refused (exit 2): nothing of the user's is ever deleted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from analyzer.config import ConfigError
from analyzer.prometheus.localprom import BackfillSeries, LocalPrometheus
from analyzer.synthetic import generate, inject_spike, inject_step

STEP = 300.0
DAYS = 35
REGRESSION_HOURS = 6
REGRESSION_SIZE = 0.4
SERVICES = {"checkout": 0.25, "search": 0.12, "cart": 0.08}  # p95 latency level in seconds
MARKER = ".perfsentinel-demo"
DEMO_ENTRIES = ("prometheus", "perfsentinel.yml")  # what the demo writes into its work directory
MARKER_TEXT = (
    "Written by `perfsentinel demo`: this directory is its work directory. A later demo run deletes only "
    f"{' and '.join(DEMO_ENTRIES)} here, never anything else.\n"
)

DEMO_CONFIG = """\
prometheus:
  url: {url}
timezone: UTC
schedule:
  score_every: 1m
  refit_every: 1h
targets:
  - name: api_latency_p95
    query: demo_latency_p95_seconds
    kind: latency
    min_rel_deviation: 0.05
  - name: api_throughput
    query: demo_requests_per_second
    kind: throughput
  - name: api_error_ratio
    query: demo_error_ratio
    kind: error_rate
    min_abs_deviation: 0.002
"""


def demo_series(end: float) -> list[BackfillSeries]:
    """Latency, throughput and error ratio per service; checkout latency regresses for the last 6 hours."""
    series = []
    for number, (service, latency) in enumerate(SERVICES.items()):
        labels = {"service": service}
        lat = generate(days=DAYS, step=STEP, level=latency, noise=0.04, seed=number, end=end)
        inject_spike(lat, lat.timestamps[len(lat.timestamps) // 2], 1.5)  # an old one-off spike in history
        if service == "checkout":
            inject_step(lat, end - REGRESSION_HOURS * 3600, REGRESSION_SIZE)
        rps = generate(days=DAYS, step=STEP, level=200.0 / (number + 1), noise=0.03, seed=10 + number, end=end)
        err = generate(days=DAYS, step=STEP, level=0.01, daily_amplitude=0.1, noise=0.1, seed=20 + number, end=end)
        series += [
            BackfillSeries("demo_latency_p95_seconds", labels, lat.timestamps, lat.values),
            BackfillSeries("demo_requests_per_second", labels, rps.timestamps, rps.values),
            BackfillSeries("demo_error_ratio", labels, err.timestamps, np.clip(err.values, 0, 1)),
        ]
    return series


def ensure_prometheus() -> None:
    if shutil.which("prometheus") and shutil.which("promtool"):
        return
    if os.geteuid() != 0:
        raise SystemExit("prometheus is not installed: apt-get install -y prometheus (as root)")
    print("installing prometheus with apt-get ...", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"], check=True)


def prepare_workdir(workdir: Path) -> None:
    """Claim ``workdir`` for the demo, or clean what an earlier demo run left in it; refuse anything else.

    Raises ConfigError (exit 2) for an existing file, or a non-empty directory the demo did not create."""
    if workdir.exists() and not workdir.is_dir():
        raise ConfigError("--workdir", f"{workdir} exists and is not a directory")
    if workdir.is_dir() and not (workdir / MARKER).is_file() and any(workdir.iterdir()):
        raise ConfigError("--workdir", f"{workdir} is not empty and was not created by the demo (no {MARKER} file "
                          "in it): nothing was deleted; give a new or empty directory (the directory of a demo older "
                          "than the marker: delete it yourself)")  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    for name in DEMO_ENTRIES:
        _remove(workdir / name)
    (workdir / MARKER).write_text(MARKER_TEXT)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def run_demo(workdir: Path, keep_running: bool = False) -> int:
    from analyzer.commands.output import print_results
    from analyzer.config import load_config
    from analyzer.models.fitting import FitPool
    from analyzer.prometheus.reader import PrometheusReader
    from analyzer.service.pipeline import Analyzer

    prepare_workdir(workdir)  # before anything is installed: a refused directory costs the user nothing
    ensure_prometheus()
    end = np.floor(time.time() / STEP) * STEP
    prometheus = LocalPrometheus(workdir / "prometheus")
    started = time.monotonic()
    prometheus.backfill(demo_series(end))
    print(
        f"backfilled {DAYS} days x {len(SERVICES) * 3} series in {time.monotonic() - started:.1f}s",
        flush=True,
    )
    with prometheus:
        config_path = workdir / "perfsentinel.yml"
        config_path.write_text(DEMO_CONFIG.format(url=prometheus.url))
        config = load_config(str(config_path))
        pool = FitPool(config.schedule.fit_workers)
        analyzer = Analyzer(config, PrometheusReader(config.prometheus), pool=pool)
        started = time.monotonic()
        analyzer.refit()
        snapshot = analyzer.score()
        pool.close()
        analyzer.close()
        print(f"Prometheus {prometheus.url}: analyzed {len(snapshot.results)} series in "
              f"{time.monotonic() - started:.1f}s\n")  # fmt: skip
        print_results(snapshot, "table", sys.stdout)
        flagged = [r for r in snapshot.results if (r.anomaly_score or 0) > 1]
        print(f"\n{len(flagged)} series outside their band (anomaly_score > 1): "
              + ", ".join(f"{r.target}{{service={r.labels.get('service')}}}" for r in flagged))  # fmt: skip
        print(f"injected: checkout p95 latency +{REGRESSION_SIZE:.0%} for the last {REGRESSION_HOURS} hours")
        print(f"config written to {config_path}")
        if keep_running:
            return serve(config_path)
        print(
            f"to serve /metrics: perfsentinel run --config {config_path} (needs this Prometheus: "
            "perfsentinel demo --keep-running keeps both up; scrape http://127.0.0.1:9977/metrics)"
        )
    return 0


def serve(config_path: Path) -> int:
    from analyzer.commands.run import serve as run_service
    from analyzer.config import load_config
    from analyzer.service.sharding import Shard

    print("serving on http://127.0.0.1:9977/metrics (Ctrl-C stops)", flush=True)
    return run_service(load_config(str(config_path)), "127.0.0.1:9977", Shard(0, 1))
