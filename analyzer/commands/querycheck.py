"""``perfsentinel validate-config --check-queries``: ask Prometheus to evaluate each target's query (and events
query) once, as an instant query, and say how many series it returns or why it failed.

One attempt per query (no retries): the point is a quick answer. An instant query sees the series with a sample in
Prometheus' lookback (5 minutes by default) at the time asked; a range read over the target's history can find
more. Only the reader is imported, never the models, so the check stays fast.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TextIO

from analyzer.config import Config
from analyzer.prometheus.reader import PrometheusError, PrometheusReader, QueryError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


@dataclass(frozen=True)
class QueryCheck:
    """The outcome of one query: ``series`` returned, or ``error`` (``rejected``: Prometheus refused the query
    itself, a configuration problem; otherwise Prometheus could not be asked)."""

    path: str  # the config key of the query, e.g. targets[0].query
    target: str
    series: int | None = None
    error: str = ""
    rejected: bool = False
    max_series: int | None = None


def check_queries(config: Config, at: float | None = None, reader: PrometheusReader | None = None) -> list[QueryCheck]:
    """One instant query per target query and events query, at ``at`` (default: now)."""
    reader = reader or PrometheusReader(replace(config.prometheus, retries=0))
    at = time.time() if at is None else at
    checks = []
    for index, target in enumerate(config.targets):
        queries = {"query": target.query, "events_query": target.events_query}
        for key, query in queries.items():
            if not query:
                continue
            path = f"targets[{index}].{key}"
            limit = target.max_series if key == "query" else None
            try:
                checks.append(QueryCheck(path, target.name, len(reader.query(query, at)), max_series=limit))
            except QueryError as exc:
                checks.append(QueryCheck(path, target.name, error=str(exc), rejected=True))
            except PrometheusError as exc:
                checks.append(QueryCheck(path, target.name, error=str(exc)))
    return checks


def describe(check: QueryCheck) -> str:
    """One line a person can act on."""
    where = f"{check.path} (target {check.target})"
    if check.error:
        kind = "rejected by Prometheus" if check.rejected else "could not be evaluated"
        return f"{where}: {kind}: {check.error}"
    line = f"{where}: {check.series} series"
    if check.series == 0:
        line += " now (a typo in a metric or label name, a renamed metric, or nothing scraped yet?)"
    elif check.max_series is not None and check.series > check.max_series:
        line += f", more than max_series ({check.max_series}): the target would fail; raise max_series or narrow it"
    return line


def report(checks: list[QueryCheck], out: TextIO) -> int:
    """Print one line per query; exit 2 when a query is rejected or would exceed max_series (the config must
    change), 1 when Prometheus could not be asked, else 0."""
    for check in checks:
        print(describe(check), file=out)
    if any(c.rejected or (c.max_series is not None and (c.series or 0) > c.max_series) for c in checks):
        return EXIT_USAGE
    return EXIT_FAILED if any(c.error for c in checks) else EXIT_OK
