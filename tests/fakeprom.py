"""A small fake Prometheus HTTP API for fault tests: it answers ``/api/v1/query_range`` and ``/api/v1/query`` for
scripted queries, with the faults a real Prometheus will not produce on demand (an HTML login page, a truncated
body, ``"status": "error"`` with HTTP 200, a vector where a matrix belongs, a non-numeric sample, slow answers,
the sample-limit 422), and records every request. Series are generated on Prometheus' own grid semantics: a
sample at every step from each series' first timestamp on, NaN gaps left out."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

ValueFunction = Callable[[np.ndarray], np.ndarray]


@dataclass
class FakeSeries:
    labels: dict[str, str]
    values: ValueFunction  # timestamps -> values (NaN: no sample)
    since: float = -math.inf  # no samples before this time


@dataclass
class Behaviour:
    """What the fake answers for one query: series, or a fault."""

    series: list[FakeSeries] = field(default_factory=list)
    fault: str | None = None  # html, truncated, status_error, vector, non_numeric, http_<code>
    script: list[str] = field(default_factory=list)  # faults of the next requests, one each, before ``fault``
    delay: float = 0.0
    max_samples: int | None = None  # HTTP 422 "too many samples" above this many samples per request


@dataclass
class Request:
    path: str
    params: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    samples: int = 0


def matrix_body(series: list[FakeSeries], start: float, end: float, step: float) -> tuple[str, int]:
    times = start + step * np.arange(int(math.floor((end - start) / step + 1e-9)) + 1)
    items, samples = [], 0
    for item in series:
        values = np.asarray(item.values(times), dtype=np.float64)
        keep = ~np.isnan(values) & (times >= item.since)
        pairs = ",".join(f'[{t:.3f},"{_text(v)}"]' for t, v in zip(times[keep], values[keep], strict=True))
        if pairs:
            items.append(f'{{"metric":{json.dumps(item.labels)},"values":[{pairs}]}}')
            samples += int(keep.sum())
    return '{"status":"success","data":{"resultType":"matrix","result":[' + ",".join(items) + "]}}", samples


def _text(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that gave up (a timeout test) is expected here, not an error worth a traceback."""


class FakePrometheus:
    def __init__(self) -> None:
        self.behaviours: dict[str, Behaviour] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self.httpd = QuietServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> FakePrometheus:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests_for(self, query: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.params.get("query") == query]

    # ------------------------------------------------------------ answering
    def answer(self, request: Request) -> tuple[int, str, str]:
        """(HTTP status, content type, body) for one request."""
        path, params = request.path, request.params
        behaviour = self.behaviours.get(params.get("query", ""), Behaviour())
        with self._lock:
            self.requests.append(request)
            fault = (behaviour.script.pop(0) if behaviour.script else behaviour.fault) or ""
        if behaviour.delay:
            time.sleep(behaviour.delay)
        if fault.startswith("http_"):
            return int(fault[5:]), "text/plain", f"fake failure {fault}"
        if fault == "html":
            return 200, "text/html", "<!DOCTYPE html><html><body><form>Sign in</form></body></html>"
        if fault == "status_error":
            return 200, "application/json", '{"status":"error","errorType":"internal","error":"proxy says no"}'
        if path.endswith("/query"):
            return 200, "application/json", self._vector(behaviour, float(params["time"]))
        if fault == "vector":
            return 200, "application/json", self._vector(behaviour, float(params["end"]))
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        points = int(math.floor((end - start) / step + 1e-9)) + 1
        if behaviour.max_samples is not None and points * len(behaviour.series) > behaviour.max_samples:
            error = "query processing would load too many samples into memory in query execution"
            return 422, "application/json", json.dumps({"status": "error", "errorType": "execution", "error": error})
        body, request.samples = matrix_body(behaviour.series, start, end, step)
        if fault == "truncated":
            body = body[: len(body) // 2]
        if fault == "non_numeric":
            body = body.replace('"]', 'x"]', 1)
        return 200, "application/json", body

    @staticmethod
    def _vector(behaviour: Behaviour, at: float) -> str:
        items = []
        for item in behaviour.series:
            value = float(item.values(np.array([at]))[0])
            if at >= item.since and not math.isnan(value):
                items.append({"metric": item.labels, "value": [at, _text(value)]})
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": items}})

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, params: dict[str, str]) -> None:
                request = Request(urlsplit(self.path).path, params, dict(self.headers.items()), self.command)
                status, content_type, body = fake.answer(request)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                query = parse_qs(urlsplit(self.path).query)
                self._reply({k: v[0] for k, v in query.items()})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(length).decode())
                self._reply({k: v[0] for k, v in form.items()})

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler


def seasonal(level: float = 1.0, amplitude: float = 0.3, noise: float = 0.02, seed: int = 0) -> ValueFunction:
    """A daily pattern with deterministic noise (the same value for the same timestamp on every read)."""

    def values(times: np.ndarray) -> np.ndarray:
        phase = 2 * np.pi * (times % 86400.0) / 86400.0
        jitter = np.sin(times * 12.9898 + seed * 78.233) * 43758.5453
        return level * (1 + amplitude * np.sin(phase)) + noise * level * (2 * (jitter - np.floor(jitter)) - 1)

    return values
