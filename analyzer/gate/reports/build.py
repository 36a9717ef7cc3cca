"""Turn what ``check``, ``once`` and ``backtest`` produced into the report model."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analyzer.gate.builds import GATE_ALPHA
from analyzer.gate.check import FAIL, PASS, UNDECIDED, WARN, CheckResult, PlotData, SeriesCheck
from analyzer.gate.recommendations import Event, Situation, recommend
from analyzer.gate.reports.model import Report, ReportItem
from analyzer.gate.timewindows import rfc3339
from analyzer.results import OK, Snapshot
from analyzer.series import series_key

MAX_BACKTEST_PLOTS = 50


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# ---------------------------------------------------------------- check
def check_statistics(item: SeriesCheck) -> dict | None:
    c = item.comparison
    if c is None:
        return None
    return {
        "test": c.test,
        "p_value": _number(c.p_value),
        "q_value": _number(item.q_value),
        "effect_size": _number(c.effect_size),
        "change_pct": _number(c.change_pct),
        "ci_low_pct": _number(c.ci_low),
        "ci_high_pct": _number(c.ci_high),
        "shift": _number(c.shift),
        "baseline_mean": _number(item.baseline_mean),
        "candidate_mean": _number(item.candidate_mean),
        "n_baseline": c.n_reference,
        "n_candidate": c.n_recent,
    }


def _budget(item: SeriesCheck) -> dict | None:
    b = item.budget
    if b is None:
        return None
    return {"statistic": b.statistic, "observed": _number(b.observed), "max": b.max, "min": b.min, "passed": b.passed}


def from_check(result: CheckResult) -> Report:
    options = result.options
    settings = {
        "mode": options.mode,
        "candidate": options.candidate.to_json(),
        "baseline": options.baseline.to_json() if options.baseline else None,
        "baseline_selector": ",".join(map(str, options.baseline_matchers)) or None,
        "candidate_selector": ",".join(map(str, options.candidate_matchers)) or None,
        "fail_on": options.fail_on,
        "undecided": options.undecided,
        "alpha": options.alpha,
        "test": options.test,
        "correction": "benjamini-hochberg",
        "confidence_level": options.confidence_level,
    }
    return _check_report(result, settings)


def _check_report(result: CheckResult, settings: dict) -> Report:
    duration = max(result.finished_at - result.started_at, 0.0)
    per_item = duration / max(len(result.series), 1)
    items = [
        ReportItem(
            s.target,
            s.key,
            s.labels,
            s.verdict,
            s.severity,
            s.fail_on,
            s.reason,
            check_statistics(s),
            _budget(s),
            None,
            s.change_start,
            s.cause,
            s.recommendations,
            s.plot if s.verdict in (FAIL, WARN) else None,
            per_item,
            s.baseline_source,
            s.change_build,
            s.change_points,
        )
        for s in result.series
    ]
    verdict = {0: PASS, 1: FAIL, 3: UNDECIDED}.get(result.exit_code, UNDECIDED)
    errors = [{"target": e.target, "kind": e.kind, "message": e.message} for e in result.errors]
    return Report(
        "check", result.finished_at, verdict, result.exit_code, duration, settings, items, errors, list(result.warnings)
    )


# ---------------------------------------------------------------- check --builds
def from_builds(result: CheckResult) -> Report:
    """The report of a builds check: one item per metric, with its change points and change build."""
    options = result.options
    directions = {s.target: s.direction for s in result.series}
    settings = {
        "mode": "builds",
        "builds_file": options.path,  # type: ignore[attr-defined]
        "since": options.since,  # type: ignore[attr-defined]
        "directions": directions,
        "fail_on": options.fail_on,
        "undecided": options.undecided,
        "alpha": options.alpha,
        "change_alpha": options.change_alpha,  # type: ignore[attr-defined]
        "gate_alpha": GATE_ALPHA,
        "test": options.test,
        "correction": "benjamini-hochberg",
        "confidence_level": options.confidence_level,
        "min_builds": options.min_builds,  # type: ignore[attr-defined]
        "aggregate": options.aggregate,  # type: ignore[attr-defined]
    }
    report = _check_report(result, settings)
    for item in report.items:
        item.series = ""  # a metric of the file has no labels
    return report


# ---------------------------------------------------------------- once
REGRESSION_TIERS = ("minor", "significant", "critical")


def _snapshot_regression(r, item: ReportItem) -> None:
    """Carry the service's regression verdict (analyzer.detection.regression) into the item when the result has one."""
    verdict = getattr(r, "verdict", None)
    if verdict not in REGRESSION_TIERS:
        return
    item.verdict, item.severity = WARN, verdict
    item.statistics = {
        "test": None,
        "p_value": _number(r.p_value),
        "q_value": _number(r.q_value),
        "effect_size": _number(r.effect_size),
        "change_pct": _number(r.change_pct),
        "ci_low_pct": _number(r.change_ci_low),
        "ci_high_pct": _number(r.change_ci_high),
        "shift": None,
        "baseline_mean": _number(r.expected),
        "candidate_mean": _number(r.value),
        "n_baseline": None,
        "n_candidate": None,
    }
    item.change_start = r.regression_start or r.timestamp
    if r.regression_event:
        item.likely_cause = Event(item.change_start, r.regression_event, "query")
    item.reason = r.verdict_reason or f"{verdict} regression"


def from_snapshot(snapshot: Snapshot, exit_code: int, started_at: float) -> Report:
    items = []
    for r in snapshot.results:
        key = series_key(r.labels)
        if r.status != OK:
            items.append(ReportItem(r.target, key, r.labels, UNDECIDED, reason=r.reason or r.status))
            continue
        anomalous = (r.anomaly_score or 0.0) > 1.0
        anomaly = {
            "score": _number(r.anomaly_score),
            "timestamp": rfc3339(r.timestamp) if r.timestamp else None,
            "value": _number(r.value),
            "expected": _number(r.expected),
            "lower": _number(r.lower),
            "upper": _number(r.upper),
            "model": r.model,
        }
        item = ReportItem(
            r.target,
            key,
            r.labels,
            WARN if anomalous else PASS,
            anomaly=anomaly,
            reason="outside the expected band" if anomalous else "",
        )
        if anomalous:
            item.change_start = r.timestamp
        _snapshot_regression(r, item)
        if item.verdict == WARN:
            cause = item.likely_cause
            item.recommendations = recommend(
                Situation(r.target, key, "stored", item.change_start, cause, True, None, None)
            )
        items.append(item)
    errors = [
        {"target": t.target, "kind": "query_failed", "message": t.error} for t in snapshot.targets if not t.success
    ]
    verdict = UNDECIDED if errors else (FAIL if exit_code else PASS)
    duration = max(snapshot.completed_at - started_at, 0.0)
    return Report(
        "once", snapshot.completed_at, verdict, exit_code, duration, {"anomaly_threshold": 1.0}, items, errors
    )


# ---------------------------------------------------------------- backtest
def _backtest_item(path: Path, name: str) -> ReportItem:
    frame = pd.read_csv(path)
    times = pd.to_datetime(frame["timestamp"], utc=True, format="mixed")
    seconds = ((times - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).to_numpy()
    scores = frame["anomaly_score"].to_numpy(dtype=np.float64)
    above = np.flatnonzero(scores > 1.0)
    anomaly = {
        "max_score": _number(float(np.nanmax(scores))) if scores.size else None,
        "anomalous_points": int(above.size),
        "points": int(scores.size),
    }
    regression = _backtest_regression(frame)
    if not above.size and regression is None:
        return ReportItem(name, "", {}, PASS, anomaly=anomaly)
    first = float(seconds[above[0]]) if above.size else float(seconds[0])
    item = ReportItem(
        name,
        "",
        {},
        WARN,
        anomaly=anomaly,
        change_start=first,
        reason=f"{above.size} point(s) outside the expected band",
    )
    if regression is not None:
        item.severity, item.statistics, start = regression
        item.change_start = start if start is not None else first
        item.reason = f"{item.severity} regression; {item.reason}"
    item.recommendations = recommend(Situation(name, "", "stored", item.change_start, None, True, None, None))
    columns = [frame[c].to_numpy(dtype=np.float64) for c in ("value", "expected", "lower", "upper")]
    item.plot = PlotData(seconds, *columns, candidate_start=first)
    return item


SEVERITY_NAMES = ("none", "minor", "significant", "critical")


def _backtest_regression(frame: pd.DataFrame) -> tuple[str, dict, float | None] | None:
    """The worst regression verdict of the replay (the first row at the highest severity), if it had any."""
    if "severity" not in frame.columns:
        return None
    severity = pd.to_numeric(frame["severity"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
    if severity.max(initial=0) <= 0:
        return None
    row = frame.iloc[int(np.argmax(severity))]
    statistics = {
        "test": None,
        "p_value": _float(row.get("p_value")),
        "q_value": None,
        "effect_size": None,
        "change_pct": _float(row.get("change_pct")),
        "ci_low_pct": None,
        "ci_high_pct": None,
        "shift": None,
        "baseline_mean": None,
        "candidate_mean": None,
        "n_baseline": None,
        "n_candidate": None,
    }
    return SEVERITY_NAMES[min(int(severity.max()), 3)], statistics, _float(row.get("regression_start"))


def _float(value: object) -> float | None:
    """A finite float, or None for blanks, NaN and text."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def from_backtest(output: Path, started_at: float) -> Report:
    """Read the CSV file(s) a backtest wrote (one per input file)."""
    files = sorted(output.rglob("*.csv")) if output.is_dir() else [output]
    items = [_backtest_item(p, str(p.relative_to(output)) if output.is_dir() else p.name) for p in files]
    plotted = 0
    for item in sorted(items, key=ReportItem.sort_key):
        if item.plot is not None:
            plotted += 1
            if plotted > MAX_BACKTEST_PLOTS:
                item.plot = None
    now = time.time()
    verdict = WARN if any(i.verdict == WARN for i in items) else PASS
    return Report("backtest", now, verdict, 0, now - started_at, {"anomaly_threshold": 1.0, "files": len(files)}, items)
