"""Causal replay of a ``timestamp,value`` CSV: refit on trailing history at the configured cadence and score
each row only from data before it. One output row per input row, in input order (timestamps may repeat)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analyzer.config import TargetConfig
from analyzer.detection import budget, episodes, novelty, regression
from analyzer.detection.calibration import Blocks
from analyzer.detection.reference import attach_reference
from analyzer.detection.scoring import anomaly_scores, gated_band
from analyzer.models import FitContext, FittedBaseline
from analyzer.models.fitting import FitPool, FitRequest
from analyzer.models.quality import insufficiency
from analyzer.telemetry import NullTelemetry

VERDICT_COLUMNS = ["drift_score", "severity", "change_pct", "p_value", "regression_start", "verdict"]
# analyzer.detection.budget
THRESHOLD_COLUMNS = ["anomaly_threshold", "novelty_threshold", "drift_threshold", "regression_threshold_pct"]
THRESHOLD_OF = dict(zip(("anomaly", "novelty", "drift", "regression"), THRESHOLD_COLUMNS, strict=True))
# alert: 1 where the shipped alert rules would start a notification (analyzer.detection.episodes), else 0
OUTPUT_COLUMNS = ["timestamp", "value", "expected", "lower", "upper", "anomaly_score", "novelty_score",
                  *VERDICT_COLUMNS, *THRESHOLD_COLUMNS, "alert"]  # fmt: skip
RULE_EVALUATION_INTERVAL = 60.0  # Prometheus evaluates the rules every minute; a row's values hold until the next


@dataclass
class Replay:
    """The input on a regular grid (for fitting) beside the rows as given (for scoring)."""

    labels: pd.Series  # timestamps as written in the input
    times: np.ndarray
    values: np.ndarray
    step: float
    grid_times: np.ndarray
    grid_values: np.ndarray


def read_input(path: Path) -> Replay:
    frame = pd.read_csv(path)
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    parsed = pd.to_datetime(frame["timestamp"], utc=True, format="mixed")
    times = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=np.float64)
    diffs = np.diff(np.sort(times))
    step = float(np.median(diffs[diffs > 0])) if np.any(diffs > 0) else 300.0
    start = float(times.min())
    index = np.rint((times - start) / step).astype(np.int64)
    grid_values = np.full(int(index.max()) + 1, np.nan)
    grid_values[index] = values
    return Replay(frame["timestamp"], times, values, step, start + step * np.arange(len(grid_values)), grid_values)


def refit_times(replay: Replay, every: float) -> np.ndarray:
    first = replay.grid_times[0] + every
    return np.arange(first, replay.times.max() + every, every)


def fit_requests(replay: Replay, target: TargetConfig, timezone: str, every: float) -> Iterator[FitRequest]:
    context = FitContext(step=replay.step, timezone=timezone, seasonality=target.seasonality,
                         band_sigmas=target.band_sigmas)  # fmt: skip
    for at in refit_times(replay, every):
        window = (replay.grid_times < at) & (replay.grid_times >= at - target.history)
        values = replay.grid_values[window]
        if insufficiency(values, replay.step, target.min_history, target.max_gap_ratio) is None:
            yield FitRequest(str(at), target.model, replay.grid_times[window], values, context)


def backtest(replay: Replay, target: TargetConfig, timezone: str, every: float, pool: FitPool) -> pd.DataFrame:
    requests = {float(request.key): request for request in fit_requests(replay, target, timezone, every)}
    baselines: dict[float, FittedBaseline] = {}
    stand_ins: dict[float, Blocks | None] = {}  # the novelty record's stand-in of each refit
    settings = budget.settings_for(target, replay.step)
    for outcome in pool.fit_all(list(requests.values()), 600.0, NullTelemetry()):
        if outcome.baseline is not None:
            request = requests[float(outcome.key)]
            attach_reference(outcome.baseline, request.timestamps, request.values, settings.regression_window)
            stand_ins[float(outcome.key)] = budget.learn_novelty(
                outcome.baseline, request.timestamps, request.values, settings
            )
            baselines[float(outcome.key)] = outcome.baseline
    expected, lower, upper, novel = (np.full(len(replay.times), np.nan) for _ in range(4))
    scores = np.zeros(len(replay.times))
    # rows scored by the baseline fitted at the latest refit time at or before them
    for at, baseline in sorted(baselines.items()):
        rows = (replay.times >= at) & (replay.times < at + every)
        if not rows.any():
            continue
        band = gated_band(baseline.predict(replay.times[rows]), target.min_abs_deviation, target.min_rel_deviation)
        expected[rows], lower[rows], upper[rows] = band.expected, band.lower, band.upper
        scores[rows] = np.nan_to_num(anomaly_scores(replay.values[rows], band, target.direction), nan=0.0)
        novel[rows] = novelty_column(replay, np.flatnonzero(rows), baseline.novelty)
    frame = pd.DataFrame({"timestamp": replay.labels, "value": replay.values, "expected": expected,
                          "lower": lower, "upper": upper, "anomaly_score": scores, "novelty_score": novel})  # fmt: skip
    frame = frame.join(verdict_columns(replay, target, baselines, every))
    frame = frame.join(threshold_columns(replay, frame, target, baselines, requests, every, stand_ins))
    frame["alert"] = episodes.notifications(frame, replay.times, interval=RULE_EVALUATION_INTERVAL).astype(np.int64)
    return frame[OUTPUT_COLUMNS]


def novelty_column(replay: Replay, rows: np.ndarray, reference: novelty.NoveltyReference | None) -> np.ndarray:
    """The novelty score of each of ``rows``: the window of the grid ending at the row's sample (as the service
    scores the latest window of what it read)."""
    if reference is None or rows.size == 0:
        return np.full(rows.size, np.nan)
    ends = np.rint((replay.times[rows] - replay.grid_times[0]) / replay.step).astype(np.int64)
    offsets = np.arange(reference.samples - 1, -1, -1)
    index = ends[:, None] - offsets[None, :]
    windows = np.where(index >= 0, replay.grid_values[np.maximum(index, 0)], np.nan)
    windows[:, -1] = replay.values[rows]  # the row's own value (repeated timestamps: each row its own)
    return novelty.scores(reference, windows, replay.times[rows])


def threshold_columns(
    replay: Replay,
    frame: pd.DataFrame,
    target: TargetConfig,
    baselines: dict[float, FittedBaseline],
    requests: dict[float, FitRequest],
    every: float,
    stand_ins: dict[float, Blocks | None] | None = None,
) -> pd.DataFrame:
    """The calibrated thresholds per row, as the service sets them: at each refit, from the record of the
    statistics the rows before it exported (``budget.ScoreRecord``) and the new baseline's history; the regression
    threshold of each row for the age of its regression (``budget.Thresholds.regression_threshold_pct``)."""
    settings = budget.settings_for(target, replay.step)
    record = budget.ScoreRecord()
    columns = {name: np.full(len(replay.times), np.nan) for name in THRESHOLD_COLUMNS}
    order = np.argsort(replay.times, kind="stable")
    scored = np.isfinite(frame["expected"].to_numpy()) & np.isfinite(replay.values)
    columns_of = ("anomaly_score", "drift_score", "change_pct", "severity", "novelty_score", "regression_start")
    anomaly, drift, change, severity, novel, start = (frame[name].to_numpy(dtype=np.float64) for name in columns_of)
    age = np.where(np.isfinite(start), np.maximum(replay.times - start, 0.0), np.nan)
    with np.errstate(invalid="ignore"):
        moved = np.abs(change) >= settings.minor_pct
    ages = settings.regression_ages
    statistics = budget.alert_statistics(anomaly, drift, change, moved, severity >= 1, novel, age, ages)
    position = 0
    for at, baseline in sorted(baselines.items()):
        while position < len(order) and replay.times[order[position]] < at:
            row = order[position]
            if scored[row]:
                values = {name: float(column[row]) for name, column in statistics.items()}
                in_force = {name: float(columns[column][row]) for name, column in THRESHOLD_OF.items()}
                record.add(float(replay.times[row]), values, in_force)
            position += 1
        request = requests[at]
        stand_in = (stand_ins or {}).get(at)
        calibrated = budget.thresholds_for(baseline, request.timestamps, request.values, settings, record, stand_in)
        rows = np.flatnonzero((replay.times >= at) & (replay.times < at + every))
        columns["anomaly_threshold"][rows] = calibrated.anomaly_threshold
        columns["novelty_threshold"][rows] = calibrated.novelty_threshold
        columns["drift_threshold"][rows] = calibrated.drift_threshold
        minor = target.severity.minor
        columns["regression_threshold_pct"][rows] = [calibrated.regression_threshold_pct(minor, a) for a in age[rows]]
    return pd.DataFrame(columns)


def verdict_columns(
    replay: Replay, target: TargetConfig, baselines: dict[float, FittedBaseline], every: float
) -> pd.DataFrame:
    """Regression verdict per row: each refit block evaluates its rows with its own baseline, whose residuals
    also cover the regression window before the block (as the service reads it at each score)."""
    settings, state = regression.settings_for(target, replay.step), regression.VerdictState()
    columns = {name: np.full(len(replay.times), np.nan) for name in ("drift_score", "change_pct", "p_value",
                                                                       "regression_start")}  # fmt: skip
    severity, verdict = np.zeros(len(replay.times), dtype=np.int64), np.full(len(replay.times), "", dtype=object)
    order = np.argsort(replay.times, kind="stable")
    times = replay.times[order]
    for at, baseline in sorted(baselines.items()):
        window = (times >= at - settings.regression_window) & (times < at + every)
        rows = np.flatnonzero(window & (times >= at) & np.isfinite(replay.values[order]))
        if rows.size == 0:
            continue
        expected = np.full(len(times), np.nan)
        expected[window] = baseline.predict(times[window]).expected
        residuals = replay.values[order] - expected
        verdicts = regression.replay(times, residuals, expected, rows, baseline.reference, settings, state)
        for row, result in verdicts.items():
            original = order[row]
            columns["drift_score"][original] = _number(result.drift_score)
            columns["change_pct"][original] = _number(result.change_pct)
            columns["p_value"][original] = _number(result.p_value)
            columns["regression_start"][original] = _number(result.start)
            severity[original], verdict[original] = result.severity, result.verdict
    return pd.DataFrame({**columns, "severity": severity, "verdict": verdict})[VERDICT_COLUMNS]


def _number(value: float | None) -> float:
    return np.nan if value is None else value


def input_files(source: Path) -> list[Path]:
    return sorted(source.rglob("*.csv")) if source.is_dir() else [source]


def run_backtest(source: Path, output: Path, target: TargetConfig, timezone: str, every: float, pool: FitPool) -> int:
    """Replay one file or every CSV under a folder (mirroring its layout); returns the number of files."""
    files = input_files(source)
    for number, path in enumerate(files, 1):
        destination = output / path.relative_to(source) if source.is_dir() else output
        if source.is_dir():
            print(f"\r[{number}/{len(files)}] {path.relative_to(source)}", end="", file=sys.stderr, flush=True)
        destination.parent.mkdir(parents=True, exist_ok=True)
        backtest(read_input(path), target, timezone, every, pool).to_csv(destination, index=False)
    if source.is_dir():
        print(file=sys.stderr)
    return len(files)
