"""One analysis pass: read each target, fit baselines (refit) and score the latest points (score).

A target whose query fails is reported and skipped; a series whose fit fails or times out is reported and
skipped; neither stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analyzer import results as r
from analyzer.config import Config, TargetConfig
from analyzer.fitting import FitOutcome, FitPool, FitRequest
from analyzer.models import FitContext, FittedBaseline
from analyzer.quality import insufficiency
from analyzer.reader import PrometheusError, PrometheusReader, QueryError
from analyzer.scoring import anomaly_scores, gated_band
from analyzer.series import Series
from analyzer.sharding import Shard
from analyzer.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)


@dataclass
class SeriesState:
    labels: dict[str, str]
    baseline: FittedBaseline | None = None
    reason: str = r.PENDING  # why there is no baseline
    note: str = ""


def aligned_window(now: float, length: float, step: float) -> tuple[float, float]:
    """A [start, end] range on the step grid, so consecutive runs read the same sample timestamps."""
    end = np.floor(now / step) * step
    return end - np.ceil(length / step) * step, end


def latest_observed(series: Series) -> tuple[float, float] | None:
    observed = np.flatnonzero(np.isfinite(series.values))
    if observed.size == 0:
        return None
    return float(series.timestamps[observed[-1]]), float(series.values[observed[-1]])


class Analyzer:
    def __init__(
        self,
        config: Config,
        reader: PrometheusReader,
        telemetry: Telemetry | None = None,
        pool: FitPool | None = None,
        shard: Shard | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.reader = reader
        self.telemetry = telemetry or NullTelemetry()
        self.pool = pool or FitPool(workers=1)
        self.shard = shard or Shard(0, 1)
        self.clock = clock
        self.states: dict[str, dict[str, SeriesState]] = {t.name: {} for t in config.targets}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ refit
    def refit(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for target in self.config.targets:
            try:
                self._refit_target(target, now)
            except PrometheusError as exc:
                self.telemetry.stage_error("query", target.name)
                log.warning("refit of target %s skipped: %s", target.name, exc)

    def _refit_target(self, target: TargetConfig, now: float) -> None:
        start, end = aligned_window(now, target.history, target.step)
        history = [s for s in self.reader.query_range(target.query, start, end, target.step) if self._owns(target, s)]
        context = FitContext(
            step=target.step,
            timezone=self.config.timezone,
            seasonality=target.seasonality,
            band_sigmas=target.band_sigmas,
        )
        states: dict[str, SeriesState] = {}
        requests: list[FitRequest] = []
        for series in history:
            reason = insufficiency(series.values, target.step, target.min_history, target.max_gap_ratio)
            states[series.key] = SeriesState(series.labels, reason=reason or r.PENDING)
            if reason is None:
                requests.append(FitRequest(series.key, target.model, series.timestamps, series.values, context))
        for outcome in self.pool.fit_all(requests, self.config.schedule.fit_timeout, self.telemetry):
            self._apply_fit(states[outcome.key], outcome, target)
        with self._lock:
            self.states[target.name] = states

    def _apply_fit(self, state: SeriesState, outcome: FitOutcome, target: TargetConfig) -> None:
        if outcome.baseline is None:
            self.telemetry.stage_error("fit", target.name)
            state.reason, state.note = r.FIT_FAILED, outcome.error
            return
        state.baseline, state.reason = outcome.baseline, ""
        state.note = "; ".join(n for n in (outcome.baseline.seasonality.note, outcome.note) if n)

    def _owns(self, target: TargetConfig, series: Series) -> bool:
        return self.shard.owns(target.name, series.key)

    # ------------------------------------------------------------ score
    def score(self, now: float | None = None) -> r.Snapshot:
        now = self.clock() if now is None else now
        snapshot = r.Snapshot(completed_at=now)
        for target in self.config.targets:
            outcome = self._score_target(target, now, snapshot.results)
            snapshot.targets.append(outcome)
        snapshot.completed_at = self.clock()
        return snapshot

    def _score_target(self, target: TargetConfig, now: float, out: list[r.SeriesResult]) -> r.TargetOutcome:
        with self._lock:
            states = self.states[target.name]
        start, end = aligned_window(now, target.score_lookback, target.step)
        try:
            recent = [
                s for s in self.reader.query_range(target.query, start, end, target.step) if self._owns(target, s)
            ]
        except PrometheusError as exc:
            self.telemetry.stage_error("query", target.name)
            reason = r.QUERY_FAILED if isinstance(exc, QueryError) else r.PROMETHEUS_UNAVAILABLE
            out.extend(r.SeriesResult(target.name, s.labels, r.ERROR, reason, note=str(exc)) for s in states.values())
            return r.TargetOutcome(target.name, False, str(exc), len(states))
        seen: set[str] = set()
        for series in recent:
            seen.add(series.key)
            state = states.get(series.key) or SeriesState(series.labels)
            out.append(self._score_series(target, series, state))
        for key, state in states.items():
            if key not in seen:
                out.append(self._stale_result(target, state))
        return r.TargetOutcome(target.name, True, "", len(seen | states.keys()))

    def _score_series(self, target: TargetConfig, series: Series, state: SeriesState) -> r.SeriesResult:
        if state.baseline is None:
            status = r.ERROR if state.reason == r.FIT_FAILED else r.INSUFFICIENT_DATA
            return r.SeriesResult(target.name, series.labels, status, state.reason, note=state.note)
        latest = latest_observed(series)
        if latest is None:
            return self._stale_result(target, state)
        timestamp, value = latest
        band = gated_band(
            state.baseline.predict(np.array([timestamp])), target.min_abs_deviation, target.min_rel_deviation
        )
        score = anomaly_scores(np.array([value]), band, target.direction)[0]
        return r.SeriesResult(
            target.name, series.labels, r.OK, "", timestamp, value,
            float(band.expected[0]), float(band.lower[0]), float(band.upper[0]), float(score),
            state.baseline.model, state.baseline.seasonality.name, state.note,
        )  # fmt: skip

    @staticmethod
    def _stale_result(target: TargetConfig, state: SeriesState) -> r.SeriesResult:
        reason = r.STALE if state.baseline is not None else state.reason
        status = r.ERROR if reason == r.FIT_FAILED else r.INSUFFICIENT_DATA
        return r.SeriesResult(target.name, state.labels, status, reason, note=state.note)
