"""Human and machine output of ``perfsentinel once``: a JSON list or an aligned table."""

from __future__ import annotations

import json
from typing import TextIO

from analyzer.results import Snapshot
from analyzer.series import series_key

TABLE_COLUMNS = (
    "target",
    "series",
    "status",
    "reason",
    "value",
    "expected",
    "lower",
    "upper",
    "anomaly_score",
    "verdict",
    "change_pct",
    "q_value",
)


def to_json(snapshot: Snapshot) -> list[dict]:
    return [result.to_json() for result in snapshot.results]


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_rows(snapshot: Snapshot) -> list[list[str]]:
    rows = []
    for result in sorted(snapshot.results, key=lambda r: -(r.anomaly_score or 0.0)):
        reason = f"{result.reason} ({result.note})" if result.status != "ok" and result.note else result.reason
        rows.append([result.target, series_key(result.labels), result.status, reason or "-",
                     *(_cell(v) for v in (result.value, result.expected, result.lower, result.upper,
                                          result.anomaly_score, result.verdict, result.change_pct,
                                          result.q_value))])  # fmt: skip
    return rows


def print_results(snapshot: Snapshot, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump(to_json(snapshot), out, indent=2)
        out.write("\n")
        return
    rows = [list(TABLE_COLUMNS), *table_rows(snapshot)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")
