"""Prometheus text exposition format 0.0.4 for column families (see exporter.families).

A family is rendered by interleaving four lists (``\\n<name>{``, label sets, ``} ``, values) and joining them
once: no Python-level loop per sample except formatting the value, which is ``repr`` (the shortest text that
parses back to the same float) mapped in C."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from exporter.families import Family


def format_value(value: float) -> str:
    value = float(value)  # numpy's repr of its scalars is not a number
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def format_values(values: Sequence[float], repetitive: bool) -> list[str]:
    """``float`` first: numpy scalars and ints print as their float (numpy's repr is not a number)."""
    if repetitive:
        distinct = {value: format_value(value) for value in set(values)}
        return list(map(distinct.__getitem__, values))
    try:
        texts = list(map(float.__repr__, values))  # numpy float64 is a float subclass
    except TypeError:  # an int among them
        texts = list(map(repr, map(float, values)))
    if "inf" in texts or "-inf" in texts or "nan" in texts:
        return list(map(format_value, values))
    return texts


def render_family(family: Family) -> str:
    help_text = family.help.replace("\\", "\\\\").replace("\n", "\\n")
    header = f"# HELP {family.name} {help_text}\n# TYPE {family.name} {family.type}"
    if family.bodies[0] == "":  # an unlabelled family has one sample and no braces
        return f"{header}\n{family.name} {format_value(family.values[0])}\n"
    count = len(family.values)
    items = [""] * (4 * count)
    items[0::4] = [f"\n{family.name}{{"] * count
    items[1::4] = family.bodies
    items[2::4] = ["} "] * count
    items[3::4] = format_values(family.values, family.repetitive)
    return f"{header}{''.join(items)}\n"


def render(families: Iterable[Family]) -> bytes:
    return "".join(render_family(family) for family in families if family.values).encode()
