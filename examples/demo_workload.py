"""A demo service for the docker-compose stack: seasonal latency, throughput and error metrics that can be told
to regress.

    python examples/demo_workload.py serve --listen 0.0.0.0:8000 [--regression checkout:latency:0.4]
    python examples/demo_workload.py history --output DIR --days 14

``serve`` exports, for the services checkout, search and cart, the gauges ``demo_latency_p95_seconds``,
``demo_requests_per_second`` and ``demo_error_ratio`` (the shapes of ``perfsentinel demo``: a daily cycle, a
weekend dip and noise, from analyzer.synthetic) plus ``demo_regression_size`` (the injected ground truth).
``history`` writes the same series for the past days as OpenMetrics files, one per day, ready for
``promtool tsdb create-blocks-from openmetrics`` (the compose stack backfills them so there is a baseline at once).

Regressions, each a relative change in the bad direction (latency and errors up, throughput down):

    curl -X POST 'http://127.0.0.1:8000/regress?service=checkout&metric=latency&size=0.4'
    curl http://127.0.0.1:8000/regress                 # what is injected now (JSON)
    curl -X DELETE http://127.0.0.1:8000/regress       # back to normal

or at start with ``--regression SERVICE:METRIC:SIZE[,...]`` / env ``DEMO_REGRESSION``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from analyzer.commands.demo import SERVICES
from analyzer.prometheus.localprom import BackfillSeries, write_openmetrics
from analyzer.synthetic import generate, seasonal_signal
from exporter.server import QuietHandler


@dataclass(frozen=True)
class Shape:
    name: str  # the exported metric
    help: str
    daily_amplitude: float
    weekend_dip: float
    noise: float
    worse_is_higher: bool


SHAPES = {
    "latency": Shape("demo_latency_p95_seconds", "p95 request latency in seconds", 0.3, 0.15, 0.04, True),
    "throughput": Shape("demo_requests_per_second", "requests per second", 0.3, 0.15, 0.03, False),
    "errors": Shape("demo_error_ratio", "failed requests / all requests", 0.1, 0.15, 0.1, True),
}


def level(service: str, metric: str) -> float:
    """The mean level: latency from analyzer.commands.demo.SERVICES, throughput falling with the service's rank."""
    rank = list(SERVICES).index(service)
    return {"latency": SERVICES[service], "throughput": 200.0 / (rank + 1), "errors": 0.01}[metric]


def regressed(value: float, metric: str, size: float) -> float:
    """``value`` made worse by the relative ``size`` (throughput never below zero, error ratio at most one)."""
    if SHAPES[metric].worse_is_higher:
        value *= 1.0 + size
    else:
        value *= max(0.0, 1.0 - size)
    return min(value, 1.0) if metric == "errors" else value


class Regressions:
    """The injected regressions, (service, metric) -> size; shared by the HTTP handler and the collector."""

    def __init__(self) -> None:
        self._sizes: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def set(self, service: str, metric: str, size: float) -> None:
        if service not in SERVICES or metric not in SHAPES:
            raise ValueError(f"service must be one of {', '.join(SERVICES)}; metric one of {', '.join(SHAPES)}")
        if not 0.0 <= size <= 10.0:
            raise ValueError(f"size must be in [0, 10], got {size}")
        with self._lock:
            if size == 0.0:
                self._sizes.pop((service, metric), None)
            else:
                self._sizes[(service, metric)] = size

    def clear(self) -> None:
        with self._lock:
            self._sizes.clear()

    def size(self, service: str, metric: str) -> float:
        with self._lock:
            return self._sizes.get((service, metric), 0.0)

    def as_json(self) -> list[dict[str, object]]:
        with self._lock:
            return [{"service": s, "metric": m, "size": v} for (s, m), v in sorted(self._sizes.items())]


def parse_regressions(text: str, into: Regressions) -> None:
    """``checkout:latency:0.4,search:errors:1`` (the --regression flag and DEMO_REGRESSION)."""
    for item in filter(None, (part.strip() for part in text.split(","))):
        service, metric, size = item.split(":")
        into.set(service, metric, float(size))


class DemoCollector(Collector):
    """Computes the current values at scrape time from the wall clock."""

    def __init__(self, regressions: Regressions, clock=time.time, seed: int | None = None) -> None:
        self.regressions = regressions
        self.clock = clock
        self.rng = np.random.default_rng(seed)

    def value(self, service: str, metric: str, now: float) -> float:
        shape = SHAPES[metric]
        clean = seasonal_signal(np.array([now]), level(service, metric), shape.daily_amplitude, shape.weekend_dip)[0]
        noisy = max(0.0, clean * (1.0 + self.rng.normal(0.0, shape.noise)))
        return regressed(noisy, metric, self.regressions.size(service, metric))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.clock()
        for metric, shape in SHAPES.items():
            family = GaugeMetricFamily(shape.name, shape.help, labels=["service"])
            for service in SERVICES:
                family.add_metric([service], self.value(service, metric, now))
            yield family
        injected = GaugeMetricFamily("demo_regression_size", "injected regression", labels=["service", "metric"])
        for service in SERVICES:
            for metric in SHAPES:
                injected.add_metric([service, metric], self.regressions.size(service, metric))
        yield injected


def history(days: float, end: float, labels: dict[str, str], step: float = 300.0) -> list[BackfillSeries]:
    """The served series for the ``days`` before ``end``, without regressions (a clean baseline).

    ``labels`` are the target labels Prometheus adds when it scrapes the live workload (job, instance): with
    them the backfilled history and the scraped samples are one series, not two.
    """
    series = []
    for number, service in enumerate(SERVICES):
        for offset, (metric, shape) in enumerate(SHAPES.items()):
            data = generate(days, step, level(service, metric), shape.daily_amplitude, shape.weekend_dip,
                            shape.noise, seed=10 * offset + number, end=end)  # fmt: skip
            values = np.clip(data.values, 0.0, 1.0 if metric == "errors" else None)
            series.append(BackfillSeries(shape.name, {**labels, "service": service}, data.timestamps, values))
    return series


# ---------------------------------------------------------------- HTTP
def make_handler(registry: CollectorRegistry, regressions: Regressions) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = urlsplit(self.path).path
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/regress":
                self._json(200, regressions.as_json())
            elif path == "/healthz":
                self._send(200, b"ok\n")
            else:
                self._send(404, b"not found: /metrics, /regress, /healthz\n")

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path != "/regress":
                return self._send(404, b"not found: POST /regress?service=...&metric=...&size=...\n")
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                regressions.set(query.get("service", ""), query.get("metric", "latency"), float(query.get("size", "")))
            except ValueError as exc:
                return self._send(400, f"{exc}\n".encode())
            self._json(200, regressions.as_json())

        def do_DELETE(self) -> None:  # noqa: N802
            if urlsplit(self.path).path != "/regress":
                return self._send(404, b"not found: DELETE /regress\n")
            regressions.clear()
            self._json(200, regressions.as_json())

        def _json(self, code: int, body: object) -> None:
            self._send(code, (json.dumps(body) + "\n").encode(), "application/json")

    return Handler


def serve(listen: str, regressions: Regressions) -> None:
    registry = CollectorRegistry()
    registry.register(DemoCollector(regressions))
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), make_handler(registry, regressions))
    print(f"demo workload on http://{listen}/metrics; regressions: {regressions.as_json()}", flush=True)
    server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="export the live metrics")
    run.add_argument("--listen", default=os.environ.get("DEMO_LISTEN", "0.0.0.0:8000"))
    run.add_argument("--regression", default=os.environ.get("DEMO_REGRESSION", ""),
                     help="SERVICE:METRIC:SIZE[,...], e.g. checkout:latency:0.4")  # fmt: skip
    past = commands.add_parser("history", help="write the past days as OpenMetrics files for promtool")
    past.add_argument("--output", required=True, type=Path)
    past.add_argument("--days", type=float, default=14.0)
    past.add_argument("--labels", default="job=demo-workload,instance=demo-workload:8000",
                      help="NAME=VALUE[,...]: the job and instance labels of the live scrape")  # fmt: skip
    args = top.parse_args(argv)
    if args.command == "history":
        end = np.floor(time.time() / 300.0) * 300.0
        labels = dict(item.split("=", 1) for item in args.labels.split(",") if item)
        files = write_openmetrics(history(args.days, end, labels), args.output)
        print(f"wrote {len(files)} OpenMetrics file(s) covering {args.days:g} days to {args.output}", flush=True)
        return 0
    regressions = Regressions()
    try:
        parse_regressions(args.regression, regressions)
    except ValueError as exc:
        print(f"demo_workload: bad --regression {args.regression!r}: {exc}", file=sys.stderr)
        return 2
    serve(args.listen, regressions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
