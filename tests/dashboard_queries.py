"""Reads the PromQL out of the committed Grafana dashboards and knows which metric names the exporter produces;
resolves dashboard variables and data links against a Prometheus the way Grafana does. Shared by
test_dashboards.py (structure, syntax, execution against a Prometheus fed by the exporter) and test_e2e_alerting.py
(execution against the end-to-end stack)."""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import requests
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
# the Grafana base URL the shipped rule files link to (docker-compose's Grafana); the Helm chart replaces it
DEFAULT_GRAFANA_URL = "http://localhost:3000"
# metrics that exist only in some setups: the likely cause needs a target with an events_query and a regression
# after an event; the scoring start needs a series still warming up (the end-to-end test has neither)
NEEDS_SCENARIO = {"perfsentinel_regression_event_info", "perfsentinel_scoring_start_timestamp_seconds"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_METRIC = re.compile(r"\b(perfsentinel[_:][A-Za-z0-9_:]*|up)\b(?!\s*\()")
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([$\w]+)\)$", re.S)
_QUERY_RESULT = re.compile(r"^query_result\((.*)\)$", re.S)


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
            text = variable_query(variable)
            match = _LABEL_VALUES.match(text) or _QUERY_RESULT.match(text)
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


# ---------------------------------------------------------------- variables and links, resolved as Grafana does
def variable_query(variable: dict) -> str:
    return (variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]).strip()


def instant(prometheus_url: str, expr: str) -> list[dict]:
    answer = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=30)
    assert answer.status_code == 200, f"{expr}: {answer.text}"
    return answer.json()["data"]["result"]


def query_result_line(sample: dict) -> str:
    """A sample as Grafana's query_result() lists it: name{label="value",...} value time_ms (values unescaped)."""
    labels = dict(sample["metric"])
    name = labels.pop("__name__", "")
    body = ",".join(f'{key}="{value}"' for key, value in labels.items())
    time, value = sample["value"]
    return f"{name}{{{body}}} {value} {int(float(time) * 1000)}"


def apply_regex(regex: str, texts: list[str]) -> list[tuple[str, str]]:
    """Grafana's variable regex: /pattern/ with optional named groups ``text`` and ``value`` (JavaScript syntax)."""
    pattern = re.compile(regex.strip("/").replace("(?<", "(?P<"))
    options = []
    for line in texts:
        match = pattern.search(line)
        if not match:
            continue
        groups = match.groupdict()
        if groups:
            value = groups.get("value") or groups.get("text")
            options.append((groups.get("text") or value, value))
        else:
            found = match.group(1) if match.groups() else match.group(0)
            options.append((found, found))
    return options


def variable_options(prometheus_url: str, variable: dict, values: dict[str, str]) -> list[tuple[str, str]]:
    """(text, value) of each option a query variable offers with the other variables at ``values``."""
    text = substitute(variable_query(variable), values)
    if match := _LABEL_VALUES.match(text):
        found = sorted({s["metric"].get(match.group(2)) for s in instant(prometheus_url, match.group(1))} - {None})
        lines = found
    elif match := _QUERY_RESULT.match(text):
        lines = [query_result_line(sample) for sample in instant(prometheus_url, match.group(1))]
    else:
        raise AssertionError(f"variable {variable['name']}: unsupported query {text}")
    return apply_regex(variable["regex"], lines) if variable.get("regex") else [(line, line) for line in lines]


def data_links(dashboard: dict) -> Iterator[tuple[dict, str]]:
    """(panel, url) of every data link of every panel."""
    for panel in all_panels(dashboard):
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
            yield panel, link["url"]


_LINK_FIELD = re.compile(r"\$\{__(?:data\.fields|field\.labels)\.(\w+)\}")


def resolve_link(url: str, labels: dict[str, str], values: dict[str, str]) -> tuple[str, dict[str, str]]:
    """(dashboard uid, {variable: value}) a data link opens for a row or series with ``labels``."""
    url = _LINK_FIELD.sub(lambda m: labels[m.group(1)], url).replace("${__url_time_range}", "from=now-6h&to=now")
    url = substitute(url, values)
    parts = urlsplit(url)
    uid = parts.path.split("/")[2]
    return uid, {key.removeprefix("var-"): value for key, value in parse_qsl(parts.query) if key.startswith("var-")}


def runbook_panel_id(alert: str) -> int:
    """The runbooks dashboard's panel of an alert (grafana/generate.py's rule, restated: it must stay stable)."""
    return 1000 + zlib.crc32(alert.encode()) % 900_000


def runbook_url(alert: str, grafana_url: str = DEFAULT_GRAFANA_URL) -> str:
    return f"{grafana_url}/d/perfsentinel-runbooks?viewPanel={runbook_panel_id(alert)}"
