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


# ---------------------------------------------------------------- the hours and weekdays a window covers
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_PROBE = 900.0  # a window covers an hour or a day if a quarter-hour instant of it falls there


def _covered(windows: tuple[Window, ...], timezone: str) -> tuple[set[int], set[int]]:
    """(hours of the day, days of the week) that the windows touch, in ``timezone``."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(timezone)
    hours: set[int] = set()
    days: set[int] = set()
    for window in windows:
        instant = window.start
        while instant < window.end and (len(hours) < 24 or len(days) < 7):
            local = datetime.fromtimestamp(instant, tz=zone)
            hours.add(local.hour)
            days.add(local.weekday())
            instant += _PROBE
    return hours, days


def _hour_ranges(hours: set[int]) -> str:
    if len(hours) == 24:
        return "every hour"
    ordered = sorted(hours)
    ranges, start = [], ordered[0]
    for previous, current in zip(ordered, [*ordered[1:], None], strict=True):
        if current != previous + 1:
            ranges.append(f"{start:02d}:00-{previous + 1:02d}:00")
            if current is not None:
                start = current
    return ", ".join(ranges)


def coverage_warnings(candidate: Window, baseline: tuple[Window, ...], timezone: str = "UTC") -> list[str]:
    """Warnings when the baseline windows cover hours of the day or days of the week that the candidate does not: a
    daily or weekly cycle then passes for a regression (or hides one). Nothing to say when they cover the same."""
    if not baseline:
        return []
    candidate_hours, candidate_days = _covered((candidate,), timezone)
    baseline_hours, baseline_days = _covered(baseline, timezone)
    warnings = []
    if baseline_hours - candidate_hours:
        warnings.append(
            f"the baseline covers other hours of the day ({_hour_ranges(baseline_hours)} {timezone}) than the "
            f"candidate ({_hour_ranges(candidate_hours)}): a daily cycle biases a window comparison; use the "
            "default seasonal baseline (no --baseline) or the same hours on earlier days (--baseline shift:7d,14d)"
        )
    if baseline_days - candidate_days:
        other = ", ".join(WEEKDAYS[d] for d in sorted(baseline_days - candidate_days))
        mine = ", ".join(WEEKDAYS[d] for d in sorted(candidate_days))
        warnings.append(
            f"the baseline covers other days of the week ({other}) than the candidate ({mine}): a weekly cycle "
            "(weekends) biases a window comparison; shift by whole weeks (--baseline shift:7d,14d) or use the "
            "default seasonal baseline (no --baseline)"
        )
    return warnings
