"""The machine-readable report: schema ``perfsentinel.report/v1``, documented in docs/report-schema.md.

Stable means: fields are only ever added; a rename or removal bumps the schema version. Non-finite numbers
are written as null so every JSON parser reads the file.
"""

from __future__ import annotations

import json
import math
from typing import Any

from analyzer import __version__
from analyzer.gate.reports.model import SCHEMA, Report, ReportItem
from analyzer.gate.timewindows import rfc3339


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def item_to_json(item: ReportItem) -> dict:
    return {
        "target": item.target,
        "series": item.series,
        "labels": item.labels,
        "verdict": item.verdict,
        "severity": item.severity,
        "gate": item.gate,
        "baseline_source": item.baseline_source or None,
        "reason": item.reason,
        "statistics": item.statistics,
        "budget": item.budget,
        "anomaly": item.anomaly,
        "change_start": rfc3339(item.change_start) if item.change_start is not None else None,
        "likely_cause": item.likely_cause.to_json() if item.likely_cause else None,
        "recommendations": [r.to_json() for r in item.recommendations],
        "change_build": item.change_build,
        "change_points": [c.to_json() for c in item.change_points] if item.change_points is not None else None,
    }


def to_json(report: Report) -> dict:
    return _clean(
        {
            "schema": SCHEMA,
            "kind": report.kind,
            "tool": {"name": "perfsentinel", "version": __version__},
            "generated_at": rfc3339(report.generated_at),
            "duration_seconds": round(report.duration, 3),
            "verdict": report.verdict,
            "exit_code": report.exit_code,
            "counts": report.counts(),
            "settings": report.settings,
            "errors": report.errors,
            "warnings": report.warnings,
            "series": [item_to_json(i) for i in report.worst_first()],
        }
    )


def render(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, sort_keys=False) + "\n"
