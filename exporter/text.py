"""Prometheus text exposition format 0.0.4 for pre-labelled families (see exporter.families)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from exporter.families import Family


def format_value(value: float) -> str:
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(families: Iterable[Family]) -> bytes:
    parts: list[str] = []
    for family in families:
        if not family.samples:
            continue
        help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
        parts.append(f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}\n")
        if not family.samples[0][0]:  # unlabelled families have one sample
            parts.extend(f"{family.name} {format_value(value)}\n" for _, value in family.samples)
            continue
        name = family.name
        # v - v == 0 holds for finite numbers only; repr is the shortest exact text and 3x faster than a call
        parts.extend(
            f"{name}{{{body}}} {value!r}\n" if value - value == 0 else f"{name}{{{body}}} {format_value(value)}\n"
            for body, value in family.samples
        )
    return "".join(parts).encode()
