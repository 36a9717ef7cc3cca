"""Turns an analysis snapshot into Prometheus metric families. No statistics here: values are copied.

Each series keeps its input labels plus ``target``; an input label that would clash with a label Perf
Sentinel adds (``target``, ``bound``, ``status``, ``reason``) is renamed ``exported_<name>``, as Prometheus
does on scrape conflicts.

Families hold each sample's label set already rendered, because prometheus_client's generic renderer took
8.9 s for 100,000 series (7 samples each) on these machines; see ``exporter.text``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from analyzer.results import STATUSES, SeriesResult, Snapshot

PREFIX = "perfsentinel_"
RESERVED_LABELS = ("target", "bound", "status", "reason", "event")


@dataclass
class Family:
    name: str
    help: str
    type: str = "gauge"
    samples: list[tuple[str, float]] = field(default_factory=list)  # (rendered label body, value)


def escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def label_body(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())


def series_labels(result: SeriesResult) -> dict[str, str]:
    labels = {(f"exported_{k}" if k in RESERVED_LABELS else k): v for k, v in result.labels.items()}
    labels["target"] = result.target
    return labels


def _present(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


@dataclass(frozen=True)
class SeriesField:
    """One per-series family: its name, help, and how to read its value (None: no sample)."""

    name: str
    help: str
    value: Callable[[SeriesResult], float | None]


SERIES_FIELDS: list[SeriesField] = [
    SeriesField("anomaly_score", "Deviation of the latest sample from its baseline in units of the band's half "
                "width, in the target's bad direction; > 1 is outside the band.", lambda r: r.anomaly_score),
    SeriesField("observed_value", "The latest sample the scores were computed from.", lambda r: r.value),
    SeriesField("observed_timestamp_seconds", "Unix time of the latest sample that was scored.",
                lambda r: r.timestamp),
    SeriesField("drift_score", "Shift of the median residual over the drift window from the baseline's reference "
                "residuals, in robust-scale units; positive is worse (absolute for direction both).",
                lambda r: r.drift_score),
    SeriesField("regression_severity", "Standing regression verdict: 0 none (or potential), 1 minor, "
                "2 significant, 3 critical.", lambda r: r.severity),
    SeriesField("regression_change_ratio", "Change of the recent level vs the baseline as a ratio of the expected "
                "value; positive is worse.", lambda r: None if r.change_pct is None else r.change_pct / 100.0),
    SeriesField("regression_p_value", "p-value of the configured test (default Mann-Whitney U) of recent vs "
                "reference residuals, one-sided toward worse.", lambda r: r.p_value),
    SeriesField("regression_effect_size", "Hedges' g of recent vs reference residuals; positive is worse.",
                lambda r: r.effect_size),
    SeriesField("regression_confidence", "1 minus the Benjamini-Hochberg adjusted p-value over the run.",
                lambda r: r.confidence),
    SeriesField("regression_start_timestamp_seconds", "Estimated start (change point) of the standing regression.",
                lambda r: r.regression_start),
]  # fmt: skip


def series_families(results: Sequence[SeriesResult], bodies: Sequence[str]) -> list[Family]:
    """Per-series families; ``bodies[i]`` is the rendered label set of ``results[i]`` (built once per analysis)."""
    singles = [Family(PREFIX + f.name, f.help) for f in SERIES_FIELDS]
    expected = Family(PREFIX + "expected_value", "Baseline at the latest sample: bound=expected|lower|upper.")
    status = Family(PREFIX + "series_status", "1 for the current status of a series (ok|insufficient_data|"
                    "error) with its reason.")  # fmt: skip
    event = Family(PREFIX + "regression_event_info", "1 for the nearest event of the target's events query "
                   "at or before the start of the standing regression (a likely cause).")  # fmt: skip
    add_expected, add_status = expected.samples.append, status.samples.append
    appenders = [(family.samples.append, spec.value) for family, spec in zip(singles, SERIES_FIELDS, strict=True)]
    for result, body in zip(results, bodies, strict=True):
        for append, read in appenders:
            value = read(result)
            if value is not None and value == value:  # NaN != NaN
                append((body, float(value)))
        if result.expected is not None and result.expected == result.expected:
            add_expected((body + ',bound="expected"', result.expected))
            add_expected((body + ',bound="lower"', result.lower))
            add_expected((body + ',bound="upper"', result.upper))
        add_status((f'{body},status="{result.status}",reason="{escape(result.reason)}"', 1.0))
        if result.regression_event:
            event.samples.append((f'{body},event="{escape(result.regression_event)}"', 1.0))
    return [*singles, expected, status, event]


def summary_families(snapshot: Snapshot) -> list[Family]:
    """Per-target counts and read outcomes of the last score run."""
    counts = Family(PREFIX + "series", "Series analyzed in the last run by target and status.")
    up = Family(PREFIX + "target_query_success", "1 when the last read of the target's query succeeded, else 0.")
    tally: dict[tuple[str, str], int] = {}
    for result in snapshot.results:
        tally[(result.target, result.status)] = tally.get((result.target, result.status), 0) + 1
    for outcome in snapshot.targets:
        target = escape(outcome.target)
        up.samples.append((f'target="{target}"', 1.0 if outcome.success else 0.0))
        for status in STATUSES:
            counts.samples.append((f'target="{target}",status="{status}"', tally.get((outcome.target, status), 0)))
    completed = Family(PREFIX + "last_analysis_timestamp_seconds", "Unix time the published analysis completed.")
    completed.samples.append(("", snapshot.completed_at))
    return [counts, up, completed]


def snapshot_families(snapshot: Snapshot) -> list[Family]:
    from exporter.baselines import baseline_families  # it builds on this module's helpers

    bodies = [label_body(series_labels(result)) for result in snapshot.results]
    return [
        *series_families(snapshot.results, bodies),
        *baseline_families(snapshot.results, bodies),
        *summary_families(snapshot),
    ]
