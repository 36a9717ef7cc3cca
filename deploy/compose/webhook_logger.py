"""The compose stack's alert receiver: logs every Alertmanager webhook notification as one JSON line per alert.

    python deploy/compose/webhook_logger.py --listen 0.0.0.0:9099

The path names the receiver (render_alertmanager.py points receiver ``chat`` at ``/chat``); ``docker compose
logs -f webhook-logger`` shows what would have been paged, posted or ticketed. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def alert_lines(receiver: str, notification: dict) -> list[str]:
    """One JSON line per alert of an Alertmanager webhook payload (version 4)."""
    lines = []
    for alert in notification.get("alerts", []):
        labels = alert.get("labels", {})
        lines.append(json.dumps({
            "receiver": receiver,
            "status": alert.get("status", notification.get("status")),
            "alertname": labels.get("alertname"),
            "severity": labels.get("severity"),
            "labels": labels,
            "summary": alert.get("annotations", {}).get("summary"),
            "startsAt": alert.get("startsAt"),
        }, sort_keys=True))  # fmt: skip
    return lines


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            notification = json.loads(body)
        except ValueError:
            self._send(400, b"expected an Alertmanager webhook JSON body\n")
            return
        for line in alert_lines(self.path.strip("/") or "default", notification):
            print(line, flush=True)
        self._send(200, b"ok\n")

    def do_GET(self) -> None:  # noqa: N802
        self._send(200 if self.path == "/healthz" else 404, b"ok\n" if self.path == "/healthz" else b"POST here\n")

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="0.0.0.0:9099")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    print(f"webhook logger on http://{args.listen}/<receiver>", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
