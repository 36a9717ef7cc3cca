"""One analysis pass: read each target, fit baselines (refit) and score the latest points (score).

A target whose query fails is reported and skipped; a series whose fit fails or times out is reported and
skipped; neither stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from analyzer import results as r
from analyzer.config import Config, TargetConfig
from analyzer.detection import budget, regression
from analyzer.detection.scoring import anomaly_scores, gated_band
from analyzer.models import FitContext, FittedBaseline, get_model
from analyzer.models.auto import choose_model
from analyzer.models.fitting import FitOutcome, FitPool, FitRequest
from analyzer.models.quality import insufficiency
from analyzer.prometheus.reader import PrometheusError, PrometheusReader, QueryError
from analyzer.series import Series, series_key
from analyzer.service.sharding import Shard
from analyzer.state.lifecycle import BaselineMeta, Lifecycle
from analyzer.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)
AUTO_RECHECK_SECONDS = 86400.0
SCORE_LOOKBACK_STEPS = 2  # the latest sample is looked for at least this many steps back (hourly data)


@dataclass
class SeriesState:
    labels: dict[str, str]
    baseline: FittedBaseline | None = None
    reason: str = r.PENDING  # why there is no baseline
    note: str = ""
    verdict: regression.VerdictState = field(default_factory=regression.VerdictState)  # survives refits
    trend: regression.Trend | None = None
    meta: BaselineMeta | None = None  # version, creation time and reason of ``baseline`` (analyzer.state.lifecycle)
    record: budget.ScoreRecord = field(default_factory=budget.ScoreRecord)  # what the thresholds are set from


@dataclass
class PendingVerdict:
    """A scored series waiting for the run-wide Benjamini-Hochberg step."""

    result: r.SeriesResult
    evidence: regression.Evidence
    state: SeriesState
    settings: regression.RegressionSettings
    events: list[tuple[float, str]]


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
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.config = config
        self.reader = reader
        self.telemetry = telemetry or NullTelemetry()
        self.pool = pool or FitPool(workers=1)
        self.shard = shard or Shard(0, 1)
        self.clock = clock
        self.lifecycle = lifecycle or Lifecycle.from_state_dir(config.state_dir, self.telemetry)
        self._auto_models: dict[str, tuple[str, float]] = {}  # target -> (model chosen by ``auto``, when)
        self.states: dict[str, dict[str, SeriesState]] = {t.name: self._stored_states(t) for t in config.targets}
        self._lock = threading.Lock()

    def _stored_states(self, target: TargetConfig) -> dict[str, SeriesState]:
        """Baselines and score records from the store: scoring starts at once, refits follow at each series'
        slot, and the alert thresholds are calibrated on the record as it was before the restart."""
        records = self.lifecycle.records(target.name)
        states = {}
        for key, labels, baseline, meta in self.lifecycle.load(target.name):
            if self.shard.owns(target.name, key):
                record = records.get(key) or budget.ScoreRecord()
                states[key] = SeriesState(labels, baseline, "", meta=meta, record=record)
        return states

    def save_records(self) -> None:
        """Store every series' score record (at shutdown; refits store the records of the series they refit)."""
        with self._lock:
            states = {name: dict(by_key) for name, by_key in self.states.items()}
        for name, by_key in states.items():
            self.lifecycle.save_records(name, {key: state.record for key, state in by_key.items()}, self.clock())

    # ------------------------------------------------------------ refit
    def refit(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for target in self.config.targets:
            if self.reader.cancelled.is_set():
                return  # stopping: the remaining targets keep their baselines
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
        with self._lock:
            previous = self.states[target.name]
        self.lifecycle.begin_pass(target.name, target.retention, now)
        model = self._model_for(target, history, context, now)
        for series in history:
            states[series.key] = state = self._carried(target, series, previous.get(series.key))
            if not self.lifecycle.due(target.name, series.key, state.baseline is not None, now,
                                      self.config.schedule.refit_every):  # fmt: skip
                continue
            values = self.lifecycle.training_values(target, series, state.baseline, now)  # flagged periods masked
            reason = insufficiency(values, target.step, target.min_history, target.max_gap_ratio)
            if reason is None:
                requests.append(FitRequest(series.key, model, series.timestamps, values, context, target.prophet))
            elif state.baseline is None:
                state.reason = reason
            else:
                state.note = f"refit skipped ({reason} once flagged periods are masked): kept the current baseline"
        self.lifecycle.seen(target.name, history, now)
        histories = {request.key: request for request in requests}
        by_key = {series.key: series for series in history}
        for outcome in self.pool.fit_all(requests, self.config.schedule.fit_timeout, self.telemetry):
            self._apply_fit(states[outcome.key], outcome, target, by_key[outcome.key], histories[outcome.key], now)
            self._learn_history(states[outcome.key], histories[outcome.key], target)
        with self._lock:
            self.states[target.name] = states
        # each series' record is stored once per refit interval, at its refit
        self.lifecycle.save_records(target.name, {key: states[key].record for key in histories}, now)

    def _carried(self, target: TargetConfig, series: Series, previous: SeriesState | None) -> SeriesState:
        """The series' state from the last pass (baseline, verdict), switched to a version pinned from the CLI."""
        state = replace(previous, labels=series.labels) if previous else SeriesState(series.labels)
        pinned = self.lifecycle.pinned_version(target.name, series.key)
        if pinned is not None and (state.meta is None or state.meta.version != pinned):
            found = self.lifecycle.activate_pinned(target.name, series.key)
            if found is not None:
                state.baseline, state.meta = found
                state.reason = ""
        return state

    def _model_for(self, target: TargetConfig, history: list[Series], context: FitContext, now: float) -> str:
        """The configured model, or for ``auto`` the one analyzer.models.auto picks (re-checked daily)."""
        if target.model != "auto":
            return target.model
        chosen = self._auto_models.get(target.name)
        if chosen is None or now - chosen[1] >= AUTO_RECHECK_SECONDS:
            sample = [(s.timestamps, s.values) for s in history]
            choice = choose_model(sample, context, lambda name: get_model(name, target.prophet))
            log.info("target %s: model auto chose %s (%s; holdout errors %s)", target.name, choice.model,
                     choice.reason, choice.errors)  # fmt: skip
            chosen = self._auto_models[target.name] = (choice.model, now)
        return chosen[0]

    def _apply_fit(
        self, state: SeriesState, outcome: FitOutcome, target: TargetConfig, series: Series, request: FitRequest,
        now: float,
    ) -> None:  # fmt: skip
        if outcome.baseline is None:
            self.telemetry.stage_error("fit", target.name)
            if state.baseline is None:
                state.reason, state.note = r.FIT_FAILED, outcome.error
            else:
                state.note = f"refit failed, kept the current baseline: {outcome.error}"
            return
        state.baseline, state.meta, decision = self.lifecycle.consider(
            target, series, request.values, state.baseline, state.meta, outcome.baseline, now
        )
        state.reason = ""
        state.note = "; ".join(n for n in (state.baseline.seasonality.note, outcome.note, decision) if n)

    @staticmethod
    def _learn_history(state: SeriesState, history: FitRequest, target: TargetConfig) -> None:
        """Reference residuals for verdicts and the trend over the history, from the fitted baseline."""
        if state.baseline is None:
            return
        budget.prepare(state.baseline, history.timestamps, history.values, target, target.step, state.record)
        expected = state.baseline.predict(history.timestamps).expected
        level = float(np.nanmedian(expected)) if np.isfinite(expected).any() else 0.0
        state.trend = regression.history_trend(
            history.timestamps, history.values - expected, level, target.direction, target.severity
        )

    def _owns(self, target: TargetConfig, series: Series) -> bool:
        return self.shard.owns(target.name, series.key)

    # ------------------------------------------------------------ score
    def score(self, now: float | None = None) -> r.Snapshot:
        now = self.clock() if now is None else now
        snapshot = r.Snapshot(completed_at=now)
        pending: list[PendingVerdict] = []
        for target in self.config.targets:
            outcome = self._score_target(target, now, snapshot.results, pending)
            snapshot.targets.append(outcome)
        self._decide_verdicts(pending)
        self._mask_regressions(pending)
        for result in snapshot.results:
            self._fill_baseline(result, now)
        snapshot.completed_at = self.clock()
        return snapshot

    def _mask_regressions(self, pending: list[PendingVerdict]) -> None:
        """Regressed periods are kept out of the next refits' training data until accepted."""
        for item in pending:
            result = item.result
            if result.severity and result.regression_start is not None and result.timestamp is not None:
                self.lifecycle.note_regression(result.target, series_key(result.labels), result.regression_start,
                                               result.timestamp)  # fmt: skip

    def _fill_baseline(self, result: r.SeriesResult, now: float) -> None:
        """Version, age and training window of the baseline a result was scored against."""
        with self._lock:
            state = self.states.get(result.target, {}).get(series_key(result.labels))
        if state is None or state.baseline is None or state.meta is None:
            return
        result.baseline_version = state.meta.version
        result.baseline_age_seconds = max(0.0, now - state.meta.created_at)
        result.baseline_reason = state.meta.reason
        result.baseline_trained_from = state.baseline.trained_from
        result.baseline_trained_to = state.baseline.trained_to

    def _score_target(
        self, target: TargetConfig, now: float, out: list[r.SeriesResult], pending: list[PendingVerdict]
    ) -> r.TargetOutcome:
        with self._lock:
            states = self.states[target.name]
        settings = regression.settings_for(target)
        start, end = aligned_window(now, max(target.score_lookback, settings.regression_window), target.step)
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
        events = self._events(target, start, end)
        lookback = max(target.score_lookback, SCORE_LOOKBACK_STEPS * target.step)
        for series in recent:
            seen.add(series.key)
            state = states.get(series.key) or SeriesState(series.labels)
            result = self._score_series(target, series.tail(end - lookback), state)
            out.append(result)
            if result.status == r.OK and state.baseline is not None:
                evidence = self._evidence(series, state, settings)
                pending.append(PendingVerdict(result, evidence, state, settings, events))
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
        result = r.SeriesResult(
            target.name, series.labels, r.OK, "", timestamp, value,
            float(band.expected[0]), float(band.lower[0]), float(band.upper[0]), float(score),
            state.baseline.model, state.baseline.seasonality.name, state.note,
        )  # fmt: skip
        fill_thresholds(result, state.baseline.thresholds, target.severity.minor)
        return result

    @staticmethod
    def _evidence(series: Series, state: SeriesState, settings: regression.RegressionSettings) -> regression.Evidence:
        """Residuals of the whole read window against the current baseline (cheap: a few hundred points)."""
        baseline = state.baseline
        expected = baseline.predict(series.timestamps).expected
        residuals = series.values - expected
        regression.warm_up(series.timestamps, residuals, expected, baseline.reference, settings, state.verdict)
        return regression.assess(series.timestamps, residuals, expected, baseline.reference, settings)

    def _events(self, target: TargetConfig, start: float, end: float) -> list[tuple[float, str]]:
        """(timestamp, name) of each sample > 0 of the target's events query; a failed read only logs."""
        if not target.events_query:
            return []
        try:
            found = self.reader.query_range(target.events_query, start - 3600.0, end, target.step)
        except PrometheusError as exc:
            log.warning("events query of target %s failed: %s", target.name, exc)
            return []
        events = []
        for series in found:
            name = series.labels.get("version") or series_key(series.labels)
            hits = np.isfinite(series.values) & (series.values > 0)
            events.extend((float(t), name) for t in series.timestamps[hits])
        return events

    @staticmethod
    def _decide_verdicts(pending: list[PendingVerdict]) -> None:
        """Benjamini-Hochberg over every p-value of this run, then each series' verdict and persistence."""
        q_values = regression.run_q_values(
            [p.evidence.comparison.p_value if p.evidence.comparison else None for p in pending]
        )
        for item, q in zip(pending, q_values, strict=True):
            verdict = regression.decide_new(
                item.evidence, float(q), item.state.verdict, item.settings, item.result.timestamp
            )
            fill_verdict(item.result, verdict, item.state.trend)
            record_sample(item.state, item.result, item.settings.thresholds.minor)
            item.result.regression_event = regression.nearest_event(
                item.events, verdict.start, item.settings.event_lookback
            )

    @staticmethod
    def _stale_result(target: TargetConfig, state: SeriesState) -> r.SeriesResult:
        reason = r.STALE if state.baseline is not None else state.reason
        status = r.ERROR if reason == r.FIT_FAILED else r.INSUFFICIENT_DATA
        return r.SeriesResult(target.name, state.labels, status, reason, note=state.note)


def fill_thresholds(result: r.SeriesResult, thresholds: budget.Thresholds | None, minor_pct: float) -> None:
    """The calibrated alert thresholds of the baseline (the floors for a baseline stored before them)."""
    thresholds = thresholds or budget.NO_THRESHOLDS
    result.anomaly_threshold = thresholds.anomaly_threshold
    result.drift_threshold = thresholds.drift_threshold
    result.regression_threshold_pct = thresholds.regression_threshold_pct(minor_pct)


def record_sample(state: SeriesState, result: r.SeriesResult, minor_pct: float) -> None:
    """Add a scored sample to the series' record (its thresholds' next calibration) and report the realised
    rate of threshold crossings."""
    thresholds = (state.baseline.thresholds if state.baseline else None) or budget.NO_THRESHOLDS
    statistics = budget.sample_statistics(
        result.anomaly_score, result.drift_score, result.change_pct, result.severity, minor_pct
    )
    if result.timestamp is not None:
        state.record.add(result.timestamp, statistics, thresholds.by_statistic(minor_pct))
    result.anomaly_crossings_per_day = state.record.crossings_per_day("anomaly")
    result.drift_crossings_per_day = state.record.crossings_per_day("drift")
    result.regression_crossings_per_day = state.record.crossings_per_day("regression")


def fill_verdict(result: r.SeriesResult, verdict: regression.Verdict, trend: regression.Trend | None) -> None:
    """Copy a verdict (and the history trend) into the series result."""
    result.drift_score = verdict.drift_score
    result.verdict = verdict.verdict
    result.severity = verdict.severity
    result.change_pct = verdict.change_pct
    result.change_ci_low = verdict.change_ci_low
    result.change_ci_high = verdict.change_ci_high
    result.p_value = verdict.p_value
    result.q_value = verdict.q_value
    result.effect_size = verdict.effect_size
    result.confidence = verdict.confidence
    result.regression_start = verdict.start
    result.verdict_reason = verdict.reason
    if trend is not None:
        result.trend = trend.trend
        result.trend_p_value = trend.p_value
        result.projected_change_pct = trend.projected_change_pct
