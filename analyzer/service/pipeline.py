"""One analysis pass: read each target, fit baselines (refit) and score the latest points (score).

A target whose query fails is reported and skipped; a series whose fit fails or times out is reported and
skipped; neither stops the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import numpy as np

from analyzer import results as r
from analyzer.config import Config, TargetConfig
from analyzer.detection import budget, novelty, regression
from analyzer.detection.scoring import anomaly_score, gated_band
from analyzer.durations import format_duration
from analyzer.models import Band, FitContext, FittedBaseline, get_model
from analyzer.models.auto import SAMPLE_SERIES, choose_model
from analyzer.models.fitting import FitOutcome, FitPool, FitRequest
from analyzer.models.quality import TOO_SHORT, covered_seconds, insufficiency
from analyzer.prometheus.reader import PrometheusError, PrometheusReader, QueryError
from analyzer.series import Series, series_key
from analyzer.service import learning
from analyzer.service.assessing import AssessItem, AssessPool, AssessRun
from analyzer.service.history import TargetHistory
from analyzer.service.reading import Reading, aligned_window
from analyzer.service.sharding import Shard
from analyzer.state.lifecycle import BaselineMeta, Lifecycle
from analyzer.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)
AUTO_RECHECK_SECONDS = 86400.0
SCORE_LOOKBACK_STEPS = 2  # the latest sample is looked for at least this many steps back (hourly data)
NO_SAMPLES = np.empty(0)
RECORD_LOCK = threading.Lock()  # the score job adds to score records while a refit copies them for its workers


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
    history_seconds: float | None = None  # history the series had at its last refit (first sample to the end)
    scoring_start: float | None = None  # while too_short without a baseline: when it reaches min_history
    evidence: tuple[float, FittedBaseline, regression.Evidence] | None = None  # latest sample, baseline, evidence
    band: tuple[float, FittedBaseline, tuple[float, float, float]] | None = None  # the same for the band
    window: tuple[float, FittedBaseline, np.ndarray] | None = None  # the read window's expected values, likewise


@dataclass
class PendingVerdict:
    """A scored series waiting for the run-wide Benjamini-Hochberg step."""

    result: r.SeriesResult
    evidence: regression.Evidence | None  # None until the run's assessments are in (``assessed``)
    state: SeriesState
    settings: regression.RegressionSettings
    events: list[tuple[float, str]]
    assessed: int | None = None  # index of this series in the run's AssessRun, when its evidence is new


def latest_observed(series: Series) -> tuple[float, float] | None:
    """The latest sample (time, value); +Inf and -Inf are samples (``histogram_quantile`` when the worst bucket is
    hit), NaN is not."""
    observed = np.flatnonzero(~np.isnan(series.values))
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
        self.assessor = AssessPool(self.pool.workers)  # the run's regression evidence (analyzer.service.assessing)
        self.shard = shard or Shard(0, 1)
        self.clock = clock
        self.lifecycle = lifecycle or Lifecycle.from_state_dir(config.state_dir, self.telemetry)
        self._auto_models: dict[str, tuple[str, float]] = {}  # target -> (model chosen by ``auto``, when)
        self.states: dict[str, dict[str, SeriesState]] = {t.name: self._stored_states(t) for t in config.targets}
        self._lock = threading.Lock()
        self.reading = Reading(config, reader, self.shard, self.telemetry)
        self._query_errors: dict[str, str] = {}  # target -> the query error last logged
        self._empty_targets: dict[str, str] = {}  # target -> why its query returned no series

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

    def close(self) -> None:
        """Stop the worker processes of the score job (the fit pool is its owner's to close)."""
        self.assessor.close()

    def save_records(self) -> None:
        """Store every series' score record (at shutdown; refits store the records of the series they refit), and
        once more what the store refused so far (a store that is still down loses only those writes)."""
        with self._lock:
            states = {name: dict(by_key) for name, by_key in self.states.items()}
        for name, by_key in states.items():
            self.lifecycle.save_records(name, {key: state.record for key, state in by_key.items()}, self.clock())
        self.lifecycle.flush()
        for target in self.config.targets:
            self.reading.save(target, self.clock(), force=True)

    def _query_failed(self, target: TargetConfig, job: str, exc: Exception) -> None:
        """One log line per target and problem (repeats of the same error go to debug), and the error counter."""
        self.telemetry.stage_error("query", target.name)
        message = str(exc)
        if self._query_errors.get(target.name) != message:
            log.warning("target %s: %s skipped, the query failed: %s", target.name, job, message)
        else:
            log.debug("target %s: %s skipped, the query still fails: %s", target.name, job, message)
        self._query_errors[target.name] = message

    def _query_worked(self, target: TargetConfig) -> None:
        if self._query_errors.pop(target.name, None) is not None:
            log.info("target %s: the query works again", target.name)

    # ------------------------------------------------------------ refit
    def refit(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for target in self.config.targets:
            if self.reader.cancelled.is_set():
                return  # stopping: the remaining targets keep their baselines
            try:
                self._refit_target(target, now)
            except PrometheusError as exc:
                self._query_failed(target, "refit", exc)
            except Exception:  # a bug in one target's refit must not cost the others theirs
                self.telemetry.stage_error("refit", target.name)
                log.exception("target %s: refit failed", target.name)

    def _refit_target(self, target: TargetConfig, now: float) -> None:
        with self.reading.lock(target):
            history = self.reading.read(target, now, discover=True)
            history.forget_empty()
            with self._lock:
                previous = self.states[target.name]
            self.lifecycle.begin_pass(target.name, target.retention, now)
            states: dict[str, SeriesState] = {}
            due: list[tuple[int, dict[str, str], str]] = []
            for row, labels, key in history.rows():
                if not self.shard.owns(target.name, key):
                    continue
                states[key] = state = self._carried(target, key, labels, previous.get(key))
                if self.lifecycle.due(target.name, key, state.baseline is not None, now,
                                      self.config.schedule.refit_every):  # fmt: skip
                    due.append((row, labels, key))
            sample = [(history.timestamps(), history.values(row)) for row, _, _ in due[:SAMPLE_SERIES]]
        self._query_worked(target)
        self.lifecycle.seen(target.name, [Series(s.labels, NO_SAMPLES, NO_SAMPLES) for s in states.values()], now)
        context = FitContext(step=target.step, timezone=self.config.timezone, seasonality=target.seasonality,
                             band_sigmas=target.band_sigmas)  # fmt: skip
        model = self._model_for(target, sample, context, now)
        in_flight: dict[str, Series] = {}
        fitted: list[str] = []
        requests = self._fit_requests(target, history, due, states, model, context, now, in_flight)
        for outcome in self.pool.fit_all(requests, self.config.schedule.fit_timeout, self.telemetry):
            series = in_flight.pop(outcome.key)
            self._apply_fit(states[outcome.key], outcome, target, series, outcome.request, now)
            fitted.append(outcome.key)
        with self._lock:
            self.states[target.name] = states
        self._log_warming(target, states)
        self.reading.save(target, now)
        # each series' record is stored once per refit interval, at its refit
        self.lifecycle.save_records(target.name, {key: states[key].record for key in fitted}, now)

    def _fit_requests(
        self, target: TargetConfig, history: TargetHistory, due: list[tuple[int, dict[str, str], str]],
        states: dict[str, SeriesState], model: str, context: FitContext, now: float, in_flight: dict[str, Series],
    ) -> Iterator[FitRequest]:  # fmt: skip
        """One fit request per due series with enough data, made only when the fit pool takes it (a history
        each: making them all first took 200 bytes per point of every due series at once)."""
        for row, labels, key in due:
            with self.reading.lock(target):
                if self.reading.histories[target.name] is not history:
                    return  # replaced meanwhile (another listing, max_series): the rest waits for the next pass
                series = Series(labels, history.timestamps(), history.values(row))
            state = states[key]
            values = self.lifecycle.training_values(target, series, state.baseline, now)  # flagged periods masked
            values[np.isinf(values)] = np.nan  # an infinite sample is scored, never learned from
            state.history_seconds = covered_seconds(series.values, target.step)
            reason = insufficiency(values, target.step, target.min_history, target.max_gap_ratio)
            warming = reason == TOO_SHORT and state.baseline is None  # scored once it has min_history
            state.scoring_start = (float(series.timestamps[-1]) + target.min_history -
                                   covered_seconds(values, target.step)) if warming else None  # fmt: skip
            if reason is None:
                with RECORD_LOCK:
                    record = state.record.copy()
                in_flight[key] = series
                yield FitRequest(key, model, series.timestamps, values, context, target.prophet, learning.learn,
                                 learning.Learning(target, record, state.baseline))  # fmt: skip
            elif state.baseline is None:
                state.reason, state.note = reason, self._insufficiency_note(target, reason, values)
            else:
                state.note = f"refit skipped ({reason} once flagged periods are masked): kept the current baseline"

    @staticmethod
    def _insufficiency_note(target: TargetConfig, reason: str, values: np.ndarray) -> str:
        """What a person can act on: how much history is needed and how much there is."""
        if reason == TOO_SHORT:
            has = covered_seconds(values, target.step)
            return f"needs {format_duration(target.min_history)} of history, has {format_duration(has)}"
        return ""

    @staticmethod
    def _log_warming(target: TargetConfig, states: dict[str, SeriesState]) -> None:
        warming = [s.history_seconds or 0.0 for s in states.values() if s.baseline is None and s.reason == TOO_SHORT]
        if warming:
            log.info("target %s: %d of %d series are warming up (need %s of history, have %s to %s)", target.name,
                     len(warming), len(states), format_duration(target.min_history),
                     format_duration(min(warming)), format_duration(max(warming)))  # fmt: skip

    def _carried(self, target: TargetConfig, key: str, labels: dict[str, str], previous: SeriesState | None
                 ) -> SeriesState:  # fmt: skip
        """The series' state from the last pass (baseline, verdict), switched to a version pinned from the CLI."""
        state = replace(previous, labels=labels) if previous else SeriesState(labels)
        pinned = self.lifecycle.pinned_version(target.name, key)
        if pinned is not None and (state.meta is None or state.meta.version != pinned):
            found = self.lifecycle.activate_pinned(target.name, key)
            if found is not None:
                state.baseline, state.meta = found
                state.reason = ""
        return state

    def _model_for(self, target: TargetConfig, sample: list[tuple[np.ndarray, np.ndarray]], context: FitContext,
                   now: float) -> str:  # fmt: skip
        """The configured model, or for ``auto`` the one analyzer.models.auto picks (re-checked daily) on a sample
        of the target's (timestamps, values)."""
        if target.model != "auto":
            return target.model
        chosen = self._auto_models.get(target.name)
        if chosen is None or now - chosen[1] >= AUTO_RECHECK_SECONDS:
            choice = choose_model(sample, context, lambda name: get_model(name, target.prophet))
            log.info("target %s: model auto chose %s (%s; holdout errors %s)", target.name, choice.model,
                     choice.reason, choice.errors)  # fmt: skip
            chosen = self._auto_models[target.name] = (choice.model, now)
        return chosen[0]

    def _apply_fit(
        self, state: SeriesState, outcome: FitOutcome, target: TargetConfig, series: Series, request: FitRequest,
        now: float,
    ) -> None:  # fmt: skip
        """Adopt or keep (analyzer.state.lifecycle): the fit worker prepared both the new fit and the baseline in
        use (reference residuals, thresholds, trend: analyzer.service.learning)."""
        if outcome.baseline is None:
            self.telemetry.stage_error("fit", target.name)
            if state.baseline is None:
                state.reason, state.note = r.FIT_FAILED, outcome.error
            else:
                state.note = f"refit failed, kept the current baseline: {outcome.error}"
                state.trend = learning.prepare(state.baseline, request.timestamps, request.values, target,
                                               state.record)  # fmt: skip
            return
        learned: learning.Learned = outcome.extra
        previous = state.baseline
        state.baseline, state.meta, decision = self.lifecycle.consider(
            target, series, request.values, previous, state.meta, outcome.baseline, now,
            (learned.state, learned.quality),
        )  # fmt: skip
        if state.baseline is outcome.baseline:
            state.trend = learned.trend
        elif state.baseline is previous:
            state.baseline, state.trend = learned.current, learned.current_trend
        else:  # a new level accepted or adopted as an improvement (rare): prepared here
            state.trend = learning.prepare(state.baseline, request.timestamps, request.values, target, state.record)
        state.reason = ""
        state.note = "; ".join(n for n in (state.baseline.seasonality.note, outcome.note, decision) if n)

    # ------------------------------------------------------------ score
    def score(self, now: float | None = None) -> r.Snapshot:
        now = self.clock() if now is None else now
        snapshot = r.Snapshot(completed_at=now)
        pending: list[PendingVerdict] = []
        run = self.assessor.start()
        for target in self.config.targets:
            snapshot.targets.append(self._score_guarded(target, now, snapshot.results, pending, run))
        self._collect_evidence(pending, run)
        self._decide_verdicts(pending)
        self._mask_regressions(pending)
        snapshot.completed_at = self.clock()
        return snapshot

    def _mask_regressions(self, pending: list[PendingVerdict]) -> None:
        """Regressed periods are kept out of the next refits' training data until accepted."""
        for item in pending:
            result = item.result
            if result.severity and result.regression_start is not None and result.timestamp is not None:
                self.lifecycle.note_regression(result.target, series_key(result.labels), result.regression_start,
                                               result.timestamp)  # fmt: skip

    @staticmethod
    def _fill_baseline(result: r.SeriesResult, state: SeriesState, now: float) -> r.SeriesResult:
        """Version, age and training window of the baseline a result was scored against."""
        if state.baseline is None or state.meta is None:
            return result
        result.baseline_version = state.meta.version
        result.baseline_age_seconds = max(0.0, now - state.meta.created_at)
        result.baseline_reason = state.meta.reason
        result.baseline_trained_from = state.baseline.trained_from
        result.baseline_trained_to = state.baseline.trained_to
        return result

    def _score_guarded(
        self, target: TargetConfig, now: float, out: list[r.SeriesResult], pending: list[PendingVerdict],
        run: AssessRun,
    ) -> r.TargetOutcome:  # fmt: skip
        """A target's results; a failed query or a bug in one target makes that target's series errors, never the
        others'."""
        with self._lock:
            states = self.states[target.name]
        results: list[r.SeriesResult] = []
        verdicts: list[PendingVerdict] = []
        try:
            outcome = self._score_target(target, states, now, results, verdicts, run)
        except PrometheusError as exc:
            self._query_failed(target, "score", exc)
            reason = r.QUERY_FAILED if isinstance(exc, QueryError) else r.PROMETHEUS_UNAVAILABLE
            note = str(exc)
        except Exception as exc:
            self.telemetry.stage_error("score", target.name)
            log.exception("target %s: score failed", target.name)
            reason, note = r.SCORE_FAILED, f"{type(exc).__name__}: {exc}"
        else:
            out.extend(results)
            pending.extend(verdicts)
            return outcome
        out.extend(self._fill_baseline(r.SeriesResult(target.name, s.labels, r.ERROR, reason, note=note), s, now)
                   for s in states.values())  # fmt: skip
        return r.TargetOutcome(target.name, False, note, len(states))

    def _score_target(
        self, target: TargetConfig, states: dict[str, SeriesState], now: float, out: list[r.SeriesResult],
        pending: list[PendingVerdict], run: AssessRun,
    ) -> r.TargetOutcome:  # fmt: skip
        settings = regression.settings_for(target)
        start, end = aligned_window(now, max(target.score_lookback, settings.regression_window), target.step)
        recent = self.reading.recent(target, now, start)
        self._query_worked(target)
        returned = self.reading.returned(target, len(recent))
        self._note_empty(target, now, empty=returned == 0)
        seen: set[str] = set()
        events = self._events(target, start, end)
        lookback = max(target.score_lookback, SCORE_LOOKBACK_STEPS * target.step)
        for series in recent:
            seen.add(series.key)
            state = states.get(series.key) or SeriesState(series.labels)
            result = self._score_series(target, series, end - lookback, state)
            result.history_seconds = state.history_seconds
            result.scoring_start = state.scoring_start if state.baseline is None else None
            out.append(self._fill_baseline(result, state, now))
            if result.status == r.OK and state.baseline is not None:
                pending.append(self._pending(series, state, settings, result, events, run))
        for key, state in states.items():
            if key not in seen:
                out.append(self._fill_baseline(self._stale_result(target, state), state, now))
        return r.TargetOutcome(target.name, True, "", len(seen | states.keys()), returned=returned)

    def _note_empty(self, target: TargetConfig, now: float, empty: bool) -> None:
        """A query that returns nothing leaves the user unmonitored: say so once (until it returns series again),
        with what an instant query sees now (data that started less than a step ago)."""
        if not empty:
            if self._empty_targets.pop(target.name, None):
                log.info("target %s: the query returns series again", target.name)
            return
        if target.name in self._empty_targets:
            return
        message = "query returned no series"
        try:
            found = self.reader.query(target.query, now)
        except PrometheusError:
            found = []
        if found:
            message += (f" on the {format_duration(target.step)} grid yet; an instant query finds {len(found)} now: "
                        "their data started less than a step ago")  # fmt: skip
        else:
            message += " (a typo in a metric or label name, a renamed metric, or nothing scraped yet?)"
        log.warning("target %s: %s", target.name, message)
        self._empty_targets[target.name] = message

    def _score_series(self, target: TargetConfig, series: Series, since: float, state: SeriesState
                      ) -> r.SeriesResult:  # fmt: skip
        """The latest sample since ``since`` scored against the series' band."""
        if state.baseline is None:
            status = r.ERROR if state.reason == r.FIT_FAILED else r.INSUFFICIENT_DATA
            return r.SeriesResult(target.name, series.labels, status, state.reason, note=state.note)
        latest = latest_observed(series.tail(since))
        if latest is None:
            return self._stale_result(target, state)
        timestamp, value = latest
        expected, lower, upper = self._band_at(target, state, series, timestamp)
        score = anomaly_score(value, expected, lower, upper, target.direction)
        result = r.SeriesResult(
            target.name, series.labels, r.OK, "", timestamp, value, expected, lower, upper, score,
            state.baseline.model, state.baseline.seasonality.name, state.note,
        )  # fmt: skip
        fill_thresholds(result, state.baseline.thresholds, target.severity.minor)
        result.novelty_score = novelty.latest_score(state.baseline.novelty, series.timestamps, series.values, timestamp)
        return result

    @staticmethod
    def _band_at(target: TargetConfig, state: SeriesState, series: Series, timestamp: float
                 ) -> tuple[float, float, float]:  # fmt: skip
        """(expected, lower, upper) of the baseline at ``timestamp``, kept while the latest sample and the baseline
        stay the same (most runs see no new sample). A new sample predicts the whole read window once: the
        verdict's residuals (``_pending``) take it from ``state.window``."""
        if state.band is not None and state.band[0] == timestamp and state.band[1] is state.baseline:
            return state.band[2]
        window = state.baseline.predict(series.timestamps)
        state.window = (timestamp, state.baseline, window.expected)
        at = int(np.searchsorted(series.timestamps, timestamp))
        band = gated_band(Band(window.expected[at : at + 1], window.lower[at : at + 1], window.upper[at : at + 1]),
                          target.min_abs_deviation, target.min_rel_deviation)  # fmt: skip
        found = float(band.expected[0]), float(band.lower[0]), float(band.upper[0])
        state.band = (timestamp, state.baseline, found)
        return found

    @staticmethod
    def _pending(
        series: Series, state: SeriesState, settings: regression.RegressionSettings, result: r.SeriesResult,
        events: list[tuple[float, str]], run: AssessRun,
    ) -> PendingVerdict:  # fmt: skip
        """The series' verdict to decide, with its evidence: reused while its latest sample and baseline are the
        ones it was computed for (a run that sees no new sample, every minute but four of five for 5-minute data,
        repeats the last verdict anyway, ``regression.decide_new``, and its p-value enters the run's
        Benjamini-Hochberg step unchanged), else assessed in the run (``AssessRun``, in worker processes when many)
        on the residuals of the whole read window against the baseline."""
        item = PendingVerdict(result, None, state, settings, events)
        baseline = state.baseline
        if state.evidence is not None and state.evidence[0] == result.timestamp and state.evidence[1] is baseline:
            item.evidence = state.evidence[2]
            return item
        window = state.window
        fresh = window is not None and window[0] == result.timestamp and window[1] is baseline
        expected = window[2] if fresh else baseline.predict(series.timestamps).expected
        residuals = np.where(np.isinf(series.values), np.nan, series.values) - expected  # verdicts: finite samples
        replays = np.empty(0, dtype=np.int64)
        if not state.verdict.warmed:  # first sight: replay the evaluations before the latest sample
            state.verdict.warmed = True
            replays = regression.warm_up_rows(residuals, settings)
        item.assessed = run.add(AssessItem(series.timestamps, residuals, expected, baseline.reference, settings,
                                           replays))  # fmt: skip
        return item

    @staticmethod
    def _collect_evidence(pending: list[PendingVerdict], run: AssessRun) -> None:
        """The run's new evidence, and the warm-up verdicts of series seen for the first time, in order."""
        assessed = run.results()
        for item in pending:
            if item.assessed is None:
                continue
            found = assessed[item.assessed]
            for evidence in found.replays:
                regression.decide(evidence, None, item.state.verdict, item.settings)
            item.evidence = found.evidence
            item.state.evidence = (item.result.timestamp, item.state.baseline, found.evidence)

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
        result = r.SeriesResult(target.name, state.labels, status, reason, note=state.note)
        result.history_seconds = state.history_seconds
        result.scoring_start = state.scoring_start if state.baseline is None else None
        return result


def fill_thresholds(result: r.SeriesResult, thresholds: budget.Thresholds | None, minor_pct: float) -> None:
    """The calibrated alert thresholds of the baseline (the floors for a baseline stored before them)."""
    thresholds = thresholds or budget.NO_THRESHOLDS
    result.anomaly_threshold = thresholds.anomaly_threshold
    result.novelty_threshold = thresholds.novelty_threshold
    result.drift_threshold = thresholds.drift_threshold
    result.regression_threshold_pct = thresholds.regression_threshold_pct(minor_pct)


def record_sample(state: SeriesState, result: r.SeriesResult, minor_pct: float) -> None:
    """The regression threshold for the age of the result's regression, the sample added to the series' record
    (its thresholds' next calibration) and the realised rates of threshold crossings (``budget.record_result``)."""
    thresholds = state.baseline.thresholds if state.baseline else None
    budget.record_result(state.record, thresholds, result, minor_pct, RECORD_LOCK)


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
