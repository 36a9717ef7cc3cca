"""Reads the PromQL out of the committed Grafana dashboards and knows which metric names the exporter produces.
Shared by test_dashboards.py (structure, syntax) and test_e2e_alerting.py (execution against Prometheus)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = REPO / "grafana" / "dashboards"
RULES = REPO / "rules"

# the metric contract of the regression verdicts and the baseline lifecycle, being added by others
CONTRACT_METRICS = {
    "perfsentinel_drift_score", "perfsentinel_regression_severity", "perfsentinel_regression_change_ratio",
    "perfsentinel_regression_p_value", "perfsentinel_regression_effect_size", "perfsentinel_regression_confidence",
    "perfsentinel_regression_start_timestamp_seconds", "perfsentinel_regression_event_info",
    "perfsentinel_baseline_age_seconds", "perfsentinel_baseline_info",
}  # fmt: skip
# counters whose series only exist once the event has happened (labelled counters are not pre-initialised), and
# the realised crossing rates, absent in a series' first day (a short end-to-end run never sees them)
UNSEEN_UNTIL_EVENT = {
    "perfsentinel_fit_fallbacks_total", "perfsentinel_anomaly_crossings_per_day",
    "perfsentinel_drift_crossings_per_day", "perfsentinel_regression_crossings_per_day",
}  # fmt: skip

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_METRIC = re.compile(r"\b(perfsentinel[_:][A-Za-z0-9_:]*|up)\b(?!\s*\()")
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([$\w]+)\)$", re.S)


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dashboard: dict) -> Iterator[dict]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows keep their panels inside


def raw_queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL with variables) of every panel target, annotation and query variable."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} query {target.get('refId')}", target.get("expr", "")
    for annotation in dashboard.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            yield f"annotation {annotation['name']!r}", annotation["expr"]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            text = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            match = _LABEL_VALUES.match(text.strip())
            yield f"variable {variable['name']!r}", match.group(1) if match else text


def substitute(expr: str, values: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2)], expr)


def dashboard_queries(values: dict[str, str]) -> list[tuple[str, str]]:
    return [(f"{name}: {where}", substitute(expr, values))
            for name, dashboard in load_dashboards().items() for where, expr in raw_queries(dashboard)]  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """Metric names in an expression (perfsentinel_*, recording rules perfsentinel:*, up); not label names."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_strings)
    return set(_METRIC.findall(without_groupings))


def recording_rules() -> dict[str, set[str]]:
    """Recorded name -> the metric names its expressions read."""
    recorded: dict[str, set[str]] = {}
    for path in sorted(RULES.glob("perfsentinel-*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    recorded.setdefault(rule["record"], set()).update(metric_names(rule["expr"]))
    return recorded


def _self_metric_names() -> set[str]:
    from exporter.selfmetrics import SelfMetrics

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"], "gauge": [""]}
    return {family.name + suffix for family in SelfMetrics().registry.collect()
            for suffix in suffixes.get(family.type, [""])}  # fmt: skip


def _analysis_metric_names() -> set[str]:
    from analyzer.results import Snapshot
    from exporter.snapshot import snapshot_families

    return {family.name for family in snapshot_families(Snapshot(completed_at=0.0))}


def exported_metric_names() -> set[str]:
    """Every name the exporter currently produces, plus the recording rules computed only from such names."""
    names = _self_metric_names() | _analysis_metric_names() | {"up"}
    names |= {record for record, sources in recording_rules().items() if sources <= names}
    return names
