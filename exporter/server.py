"""HTTP endpoints: /metrics (the last published analysis, rendered once per analysis, never at scrape
time, plus the self-monitoring metrics), /healthz (the process serves) and /readyz (an analysis has been
published)."""

from __future__ import annotations

import gc
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from analyzer.results import Snapshot
from exporter.families import LabelCache
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import snapshot_families
from exporter.text import render


def render_snapshot(snapshot: Snapshot, cache: LabelCache | None = None) -> bytes:
    """The cyclic garbage collector is paused meanwhile: rendering allocates millions of short-lived tuples and
    lists (no cycles), and each collection they trigger walks every object the service holds; at 100k series
    that tripled the time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return render(snapshot_families(snapshot, cache))
    finally:
        if was_enabled:
            gc.enable()


class Exposition:
    """Holds the rendered text of the last analysis; ``publish`` swaps it atomically."""

    def __init__(self, self_metrics: SelfMetrics) -> None:
        self.self_metrics = self_metrics
        self._analysis = b""
        self._labels = LabelCache()  # rendered label sets, reused while the same series come back
        self._ready = threading.Event()

    def publish(self, snapshot: Snapshot) -> None:
        self._analysis = render_snapshot(snapshot, self._labels)
        self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def body(self) -> bytes:
        return self._analysis + generate_latest(self.self_metrics.registry)


class QuietHandler(BaseHTTPRequestHandler):
    """Sends whole responses with a length, and logs no request line (scrapes every 15 s would flood the log)."""

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def make_handler(exposition: Exposition) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, exposition.body(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n")
            elif path == "/readyz":
                ready = exposition.ready
                self._send(200 if ready else 503, b"ready\n" if ready else b"no analysis published yet\n")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

    return Handler


class MetricsServer:
    def __init__(self, exposition: Exposition, host: str, port: int) -> None:
        self.httpd = ThreadingHTTPServer((host, port), make_handler(exposition))
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
