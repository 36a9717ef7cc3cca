"""Log output of the ``perfsentinel`` command: text (the default) or one JSON object per line (``--log-format
json``) for log pipelines (Loki, Elasticsearch, Cloud Logging).

A JSON line has ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` and ``message``, ``exception`` when a
traceback is attached, and the structured figures a log call passes as ``extra={"fields": {...}}`` (the run summary
of analyzer.service.scheduler) as top-level keys.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RESERVED_KEYS = ("time", "level", "logger", "message", "exception")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }  # fmt: skip
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if key not in RESERVED_KEYS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["exception"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(level: str, log_format: str = "text") -> None:
    """A root handler on stderr at ``level`` in ``log_format``; like ``logging.basicConfig``, nothing changes when
    the root logger has handlers already (an embedding program's, or pytest's)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
