"""Prometheus-style durations ("90s", "5m", "1h30m", "28d", "2w") as seconds."""

import re

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | int | float) -> float:
    """Return seconds; bare numbers are seconds. Raises ValueError on anything else."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like '5m', got {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"duration must not be negative, got {text}")
        return float(text)
    value = str(text).strip()
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise ValueError(f"expected a duration like '5m', '1h30m' or '28d', got {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """Shortest exact Prometheus duration for whole seconds (e.g. 300 -> '5m')."""
    seconds = int(round(seconds))
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
