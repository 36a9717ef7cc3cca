"""Families about the baseline each series was scored against: its age and a version info metric.

``perfsentinel_baseline_info`` carries the model, version, the reason it was adopted and its training window
(RFC 3339, UTC) as labels, value 1; a new version is a new label set, so a dashboard can show when the
baseline changed and why. Values are copied from the analysis results; nothing is computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from analyzer.results import SeriesResult
from exporter.families import (
    PREFIX,
    RESERVED_LABELS,
    Family,
    LabelCache,
    classic_name,
    distinct_bodies,
    label_body,
    series_labels,
)

INFO_LABELS = ("model", "version", "reason", "trained_from", "trained_to")
INFO_RESERVED = frozenset(RESERVED_LABELS + INFO_LABELS)


@lru_cache(maxsize=65536)  # series fitted in one pass share their training window
def rfc3339(seconds: float | None) -> str:
    return "" if seconds is None else datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def info_body(result: SeriesResult, series_body: str, annotate: bool = False) -> str | None:
    """The series labels (an input label exported under an info label's name becomes ``exported_<name>``) plus
    the info. With ``annotate``: the same with ``renamed_labels`` (see ``series_labels``), None if nothing was
    renamed."""
    if annotate or any(classic_name(name) in INFO_LABELS for name in result.labels):
        labels = series_labels(result, INFO_RESERVED, annotate)
        if labels is None:
            return None
        series_body = label_body(labels)
    info = {"model": result.model or "", "version": str(result.baseline_version),
            "reason": result.baseline_reason or "", "trained_from": rfc3339(result.baseline_trained_from),
            "trained_to": rfc3339(result.baseline_trained_to)}  # fmt: skip
    return f"{series_body},{label_body(info)}"


def baseline_families(results: Sequence[SeriesResult], bodies: Sequence[str], cache: LabelCache) -> list[Family]:
    """``bodies[i]`` is the rendered label set of ``results[i]``; info label sets are kept in ``cache``."""
    age = Family(PREFIX + "baseline_age_seconds", "Seconds since the baseline a series is scored against was "
                 "adopted; grows while an update strategy keeps it (manual, pinned, flagged).",
                 repetitive=True)  # fmt: skip
    info = Family(PREFIX + "baseline_info", "1 for the baseline in use: model, version, why it was adopted "
                  "(initial, refresh, scheduled, improvement, accepted, reset) and its training window.",
                  repetitive=True)  # fmt: skip
    based = [(r, b) for r, b in zip(results, bodies, strict=True) if r.baseline_version is not None]
    aged = [(r, b) for r, b in based if r.baseline_age_seconds is not None]
    age.bodies, age.values = [b for _, b in aged], [r.baseline_age_seconds for r, _ in aged]
    keys = [("info", b, r.model, r.baseline_version, r.baseline_reason, r.baseline_trained_from,
             r.baseline_trained_to) for r, b in based]  # fmt: skip
    bodies = cache.lookup(keys, lambda i: info_body(*based[i]))
    info.bodies = distinct_bodies(bodies, lambda i: info_body(*based[i], annotate=True))
    info.values = [1.0] * len(based)
    return [age, info]
