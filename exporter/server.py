"""HTTP endpoints: /metrics (the last published analysis, rendered once per analysis, never at scrape time, plus
the self-monitoring metrics), /healthz (the process serves) and /readyz (an analysis in which a target succeeded
has been published).

The server is one asyncio event loop in one thread. A connection costs a socket and a coroutine, never a thread,
so idle or half-sent connections (a slowloris) cannot pile up threads; the only other thread checks bcrypt
passwords, one at a time. Limits: a new connection must finish its TLS handshake and request head within
``header_timeout``, a kept-alive one must send its next request within ``idle_timeout`` (and its head within
``header_timeout`` of the first byte), a response must be sent within ``write_timeout``, and at most
``max_connections`` are open: above that the connection that has waited longest for a request head is closed, so a
flood of idle connections cannot lock a scrape out.

With ``--web.config.file`` (exporter.webconfig) connections are TLS and every path requires basic auth, except
/healthz and /readyz: they answer without authentication, and also in plain HTTP on a TLS port, so the container
HEALTHCHECK and Kubernetes probes keep working whatever the web config (they reveal only "ok" and "ready"). Any
other plain-HTTP request to a TLS port gets 400, as Go's servers answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from analyzer.results import Snapshot
from exporter.families import LabelCache
from exporter.selfmetrics import SelfMetrics
from exporter.snapshot import snapshot_families
from exporter.text import render
from exporter.webconfig import BasicAuth, WebConfig, WebConfigFile, WebConfigInvalid, credentials

log = logging.getLogger(__name__)

UNAUTHENTICATED_PATHS = ("/healthz", "/readyz")
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of a TLS ClientHello
WRITE_CHUNK = 256 * 1024  # a slow reader holds at most about this much of a response in memory
MAX_PENDING_PASSWORD_CHECKS = 32


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
    """Holds the rendered text of the last analysis; ``publish`` swaps it atomically. Ready once a published
    analysis had a target whose query succeeded (an analysis of nothing, or of failures only, is not ready)."""

    def __init__(self, self_metrics: SelfMetrics) -> None:
        self.self_metrics = self_metrics
        self._analysis = b""
        self._labels = LabelCache()  # rendered label sets, reused while the same series come back
        self._ready = threading.Event()

    def publish(self, snapshot: Snapshot) -> None:
        self._analysis = render_snapshot(snapshot, self._labels)
        if any(outcome.success for outcome in snapshot.targets):
            self._ready.set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def body(self) -> bytes:
        return self._analysis + generate_latest(self.self_metrics.registry)


class QuietHandler(BaseHTTPRequestHandler):
    """For the small http.server programs of examples/ (the demo workload): sends whole responses with a length,
    and logs no request line."""

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


# ---------------------------------------------------------------- HTTP messages
@dataclass(frozen=True)
class Limits:
    header_timeout: float = 5.0
    idle_timeout: float = 60.0
    write_timeout: float = 60.0
    max_connections: int = 256
    max_head_bytes: int = 16 * 1024


@dataclass
class Request:
    method: str
    path: str
    version: str
    headers: dict[str, str]

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        has_body = self.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in self.headers
        return self.version == "HTTP/1.1" and "close" not in connection and not has_body  # a body is never read


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self, head_only: bool, keep_alive: bool, extra: dict[str, str]) -> tuple[bytes, bytes]:
        lines = [f"HTTP/1.1 {self.status} {HTTPStatus(self.status).phrase}", f"Content-Type: {self.content_type}",
                 f"Content-Length: {len(self.body)}", f"Connection: {'keep-alive' if keep_alive else 'close'}",
                 *(f"{k}: {v}" for k, v in {**extra, **self.headers}.items())]  # fmt: skip
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), b"" if head_only else self.body


class BadRequest(Exception):
    pass


def parse_head(head: bytes) -> Request:
    request_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(f"malformed request line {request_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise BadRequest(f"malformed header line {line[:80]!r}")
        headers[name.lower()] = value.strip()
    method, target, version = parts
    return Request(method, target.split("?", 1)[0], version, headers)


def _set_once(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def text(status: int, message: str, **headers: str) -> Response:
    return Response(status, f"{message}\n".encode(), headers=headers)


# ---------------------------------------------------------------- the server
class MetricsServer:
    """Serves ``exposition`` on ``host:port`` (port 0: a free one); ``web_config`` adds TLS and basic auth."""

    def __init__(self, exposition: Exposition, host: str, port: int, web_config: WebConfigFile | None = None,
                 limits: Limits | None = None) -> None:  # fmt: skip
        self.exposition = exposition
        self.web_config = web_config
        self.limits = limits or Limits()
        self._auth: BasicAuth | None = None
        self._password_checks = 0
        self._socket = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                            backlog=128)  # fmt: skip
        self._socket.setblocking(False)
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(self._loop_exception)
        self._waiting: OrderedDict[asyncio.Task, None] = OrderedDict()  # waiting for a request head, oldest first
        self._open: set[asyncio.Task] = set()
        self._bcrypt = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-bcrypt")
        self._thread = threading.Thread(target=self._run, name="metrics-http", daemon=True)
        self._stopped = self._loop.create_future()

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def scheme(self) -> str:
        return "https" if self.web_config and self.web_config.tls else "http"

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(lambda: self._stopped.done() or self._stopped.set_result(None))
            self._thread.join(timeout=10)
        self._socket.close()
        self._bcrypt.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        accepting = asyncio.create_task(self._accept_forever())
        await self._stopped
        accepting.cancel()
        for task in list(self._open):
            task.cancel()
        await asyncio.gather(accepting, *self._open, return_exceptions=True)

    async def _accept_forever(self) -> None:
        while True:
            try:
                sock, _ = await self._loop.sock_accept(self._socket)
            except OSError as exc:  # e.g. out of file descriptors: wait instead of spinning
                log.warning("cannot accept a connection: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if len(self._open) >= self.limits.max_connections and not self._evict_oldest_waiting():
                sock.close()  # every connection is busy sending a response: refuse, without any thread
                continue
            task = asyncio.create_task(self._connection(sock))
            self._open.add(task)
            self._waiting[task] = None
            task.add_done_callback(lambda done, sock=sock: self._closed(done, sock))
            await asyncio.sleep(0)  # let it start: an accept of a queued connection does not yield by itself

    def _closed(self, task: asyncio.Task, sock: socket.socket) -> None:
        """Also for a task cancelled before it started, whose own cleanup never ran."""
        self._open.discard(task)
        self._waiting.pop(task, None)
        sock.close()

    def _evict_oldest_waiting(self) -> bool:
        if not self._waiting:
            return False
        oldest, _ = self._waiting.popitem(last=False)
        oldest.cancel()
        return True

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exception = context.get("exception")
        if isinstance(exception, (OSError, ssl.SSLError, asyncio.CancelledError)):
            log.debug("connection error: %s", context.get("message"))  # clients hang up, send junk, time out
        else:
            loop.default_exception_handler(context)

    # ------------------------------------------------------------ one connection
    async def _connection(self, sock: socket.socket) -> None:
        task = asyncio.current_task()
        writer = None
        try:
            async with asyncio.timeout(self.limits.header_timeout):
                tls = await self._wants_tls(sock)
                reader, writer = await self._streams(sock, tls)
                buffer = bytearray()
                head = await self._read_head(reader, buffer, first_byte_timeout=None)
            while head is not None:
                self._waiting.pop(task, None)
                keep_alive = await self._answer(head, writer, tls)
                if not keep_alive:
                    break
                self._waiting[task] = None
                head = await self._read_head(reader, buffer, first_byte_timeout=self.limits.idle_timeout)
        except (TimeoutError, OSError, ssl.SSLError, EOFError, WebConfigInvalid, BadRequest):
            pass  # timed out, hung up, not TLS, or no valid web config: nothing to answer
        finally:
            self._waiting.pop(task, None)
            if writer is not None:
                writer.transport.abort()
            sock.close()

    async def _wants_tls(self, sock: socket.socket) -> bool:
        """Whether the connection starts a TLS handshake; the server's TLS context is built per connection, so a
        renewed certificate or changed web config applies to the next connection."""
        if self.web_config is None or not self.web_config.tls:
            return False
        first = await self._peek(sock)
        if first is None:
            raise EOFError
        return first == TLS_HANDSHAKE_RECORD

    async def _peek(self, sock: socket.socket) -> int | None:
        while True:
            try:
                data = sock.recv(1, socket.MSG_PEEK)
                return data[0] if data else None
            except (BlockingIOError, InterruptedError):
                readable = self._loop.create_future()
                self._loop.add_reader(sock.fileno(), _set_once, readable)
                try:
                    await readable
                finally:
                    self._loop.remove_reader(sock.fileno())

    async def _streams(self, sock: socket.socket, tls: bool) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = self.web_config.current().ssl_context if tls else None
        reader = asyncio.StreamReader(limit=self.limits.max_head_bytes, loop=self._loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=self._loop)
        transport, _ = await self._loop.connect_accepted_socket(lambda: protocol, sock, ssl=context)
        return reader, asyncio.StreamWriter(transport, protocol, reader, self._loop)

    async def _read_head(self, reader: asyncio.StreamReader, buffer: bytearray,
                         first_byte_timeout: float | None) -> bytes | None:  # fmt: skip
        """The next request head (None when the client closed the connection between requests). Bytes after it
        stay in ``buffer`` (pipelined requests)."""
        if not buffer and first_byte_timeout is not None:
            async with asyncio.timeout(first_byte_timeout):
                chunk = await reader.read(65536)
            if not chunk:
                return None
            buffer += chunk
        async with (
            contextlib.nullcontext() if first_byte_timeout is None else asyncio.timeout(self.limits.header_timeout)
        ):
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                if len(buffer) > self.limits.max_head_bytes:
                    raise BadRequest("request head too large")
                chunk = await reader.read(65536)
                if not chunk:
                    if buffer:
                        raise EOFError
                    return None
                buffer += chunk
        head = bytes(buffer[:end])
        del buffer[: end + 4]
        return head

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter, tls: bool) -> bool:
        """Answers one request; whether the connection stays open for the next."""
        config: WebConfig | None = None
        with contextlib.suppress(WebConfigInvalid):  # _respond refuses what needs a valid config
            config = self.web_config.current() if self.web_config else WebConfig()
        try:
            request = parse_head(head)
        except BadRequest as exc:
            request, response = None, text(400, f"bad request: {exc}")
        else:
            response = await self._respond(request, tls, config)
        keep_alive = request is not None and request.keep_alive and response.status < 500
        head_only = request is not None and request.method == "HEAD"
        head_bytes, body = response.encode(head_only, keep_alive, dict(config.headers) if config else {})
        async with asyncio.timeout(self.limits.write_timeout):
            writer.write(head_bytes)
            view = memoryview(body)
            for start in range(0, len(body), WRITE_CHUNK):
                writer.write(view[start : start + WRITE_CHUNK])
                await writer.drain()
            await writer.drain()
        return keep_alive

    async def _respond(self, request: Request, tls: bool, config: WebConfig | None) -> Response:
        """``config`` is None while the web config file is invalid."""
        if request.method not in ("GET", "HEAD"):
            return text(405, "only GET and HEAD", Allow="GET, HEAD")
        if request.path in UNAUTHENTICATED_PATHS:
            return self._route(request.path)
        if self.web_config is not None and self.web_config.tls and not tls:
            return text(400, "Client sent an HTTP request to an HTTPS server.")
        if config is None:
            return text(500, "the web config file is invalid; see the log")
        denied = await self._authenticate(config, request)
        return denied or self._route(request.path)

    async def _authenticate(self, config: WebConfig, request: Request) -> Response | None:
        """None when the request may pass, else the answer."""
        if not config.users:
            return None
        given = credentials(request.headers.get("authorization"))
        if given is not None:
            if self._auth is None:
                self._auth = BasicAuth()
            allowed = self._auth.cached(config.users, *given)
            if allowed is None:
                if self._password_checks >= MAX_PENDING_PASSWORD_CHECKS:
                    return text(429, "too many password checks at once", **{"Retry-After": "1"})
                self._password_checks += 1
                try:
                    allowed = await self._loop.run_in_executor(self._bcrypt, self._auth.check, config.users, *given)
                finally:
                    self._password_checks -= 1
            if allowed:
                return None
        return text(401, "Unauthorized", **{"WWW-Authenticate": "Basic"})

    def _route(self, path: str) -> Response:
        if path == "/metrics":
            return Response(200, self.exposition.body(), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return text(200, "ok")
        if path == "/readyz":
            if self.exposition.ready:
                return text(200, "ready")
            return text(503, "no analysis with a successful target published yet")
        return text(404, "not found: try /metrics, /healthz or /readyz")
