"""Time windows on the command line: ``now-7d:now-1h``, RFC 3339 (``2026-01-05T10:00:00Z``) or Unix seconds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from analyzer.durations import parse_duration

_RELATIVE = re.compile(r"^now\s*(?:([+-])\s*(\S+))?$")


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    text: str

    @property
    def length(self) -> float:
        return self.end - self.start

    def to_json(self) -> dict:
        return {"start": rfc3339(self.start), "end": rfc3339(self.end), "spec": self.text}


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, now: float) -> float:
    """``now``, ``now-1h``, ``now+5m``, RFC 3339 (a missing offset means UTC) or Unix seconds."""
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        sign, amount = relative.groups()
        if sign is None:
            return now
        return now + (1 if sign == "+" else -1) * parse_duration(amount)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"expected now, now-1h, RFC 3339 or Unix seconds, got {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_window(text: str, now: float) -> Window:
    """``START:END``. RFC 3339 times contain colons too, so every colon is tried as the separator."""
    errors = []
    for match in re.finditer(":", text):
        head, tail = text[: match.start()], text[match.end() :]
        try:
            start, end = parse_time(head, now), parse_time(tail, now)
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if end <= start:
            raise ValueError(f"window {text!r} ends before it starts")
        return Window(start, end, text)
    raise ValueError(f"expected START:END (e.g. now-7d:now-1h or 2026-01-05T10:00:00Z:2026-01-05T11:00:00Z), "
                     f"got {text!r}")  # fmt: skip


def parse_baseline_windows(text: str, now: float, candidate: Window) -> tuple[Window, ...]:
    """One or more baseline windows: ``START:END[,START:END...]``, or ``shift:1d,2d,7d`` for the candidate window
    moved back by each duration (the same time of day or week, so a daily cycle cannot pass for a regression)."""
    if text.startswith("shift:"):
        shifts = [parse_duration(part) for part in text[len("shift:") :].split(",") if part.strip()]
        if not shifts or min(shifts) < candidate.length:
            raise ValueError(f"shifts must be at least the candidate window's length, got {text!r}")
        return tuple(Window(candidate.start - d, candidate.end - d, f"candidate - {part.strip()}")
                     for d, part in zip(shifts, text[len("shift:") :].split(","), strict=True))  # fmt: skip
    return tuple(parse_window(piece, now) for piece in _split_windows(text))


def _split_windows(text: str) -> list[str]:
    """Split on commas; RFC 3339 times never contain one."""
    return [piece.strip() for piece in text.split(",") if piece.strip()]


def span(windows: tuple[Window, ...], text: str) -> Window:
    return Window(min(w.start for w in windows), max(w.end for w in windows), text)
