"""``perfsentinel check``: compare a candidate with a baseline, per target and series, and gate a pipeline.

Three ways to name the baseline:

* ``window``: the same query over an earlier time window (``--baseline now-7d:now-1h``);
* ``selector``: the same query restricted to other labels (``--baseline-selector 'version="1.4.2"'``), by
  default over the candidate's own window (a canary beside the stable version);
* ``stored``: the seasonal baseline, fitted on the history before the candidate window, so the candidate is
  compared with the expected values for its own time of day and week (residuals against residuals).

The statistics are those of the regression verdicts (``analyzer.detection.stats``): the test, the p-value, Hedges' g,
change % and its confidence interval; Benjamini-Hochberg controls the false discovery rate across every series
checked in one run. A series fails when its change is significant after that control and its tier reaches the
gate (``--fail-on``, per-target ``check.fail_on``), or when it breaks its absolute budget.

Exit codes: 0 no gated regression, 1 gated regression, 2 usage or configuration error (including a query
Prometheus rejects), 3 could not decide (Prometheus unreachable, insufficient data) unless
``--undecided pass``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from analyzer.config import Budget, Config, TargetConfig
from analyzer.detection import stats
from analyzer.detection.reference import attach_reference
from analyzer.durations import format_duration
from analyzer.gate.changepoints import find_change_points, start_of_latest_shift
from analyzer.gate.recommendations import (
    Event,
    Situation,
    events_from_series,
    first_after,
    likely_cause,
    recommend,
)
from analyzer.gate.timewindows import Window, coverage_warnings
from analyzer.models import FitContext, FittedBaseline
from analyzer.models.fitting import FitPool, FitRequest
from analyzer.models.quality import insufficiency
from analyzer.prometheus.reader import PrometheusError, PrometheusReader, QueryError
from analyzer.prometheus.selectors import Matcher, inject_matchers
from analyzer.series import Series, series_key
from analyzer.telemetry import NullTelemetry

EXIT_PASS, EXIT_REGRESSION, EXIT_USAGE, EXIT_UNDECIDED = 0, 1, 2, 3
PASS, WARN, FAIL, UNDECIDED = "pass", "warn", "fail", "undecided"
MODES = ("window", "selector", "stored")
TIERS = ("minor", "significant", "critical")
IN_PROCESS_FITS = 8  # stored mode fits this many series in-process; more go to the process pool
TAIL_MIN = 12 * 3600.0  # the change start is looked for at least this far before the candidate
MAX_EVENT_POINTS = 10_000  # per series of the events query (Prometheus refuses more than 11,000)


@dataclass(frozen=True)
class CheckOptions:
    mode: str
    candidate: Window
    baseline: Window | None = None  # window and selector modes: the whole span
    baseline_parts: tuple[Window, ...] = ()  # several windows (e.g. the same hour on earlier days), read and joined
    baseline_matchers: tuple[Matcher, ...] = ()
    candidate_matchers: tuple[Matcher, ...] = ()
    history: float | None = None  # stored mode: fit history before the candidate (default: target.history)
    fail_on: str = "significant"
    undecided: str = "fail"  # fail | pass: what exit code 3 situations do to the build
    alpha: float = 0.05  # false discovery rate across all series
    test: str = stats.DEFAULT_TEST
    thresholds: stats.SeverityThresholds = stats.SeverityThresholds()
    confidence_level: float = 0.95
    max_points: int = 500  # per series and window; the step grows to stay below (reading dominates the run)
    min_step: float = 15.0
    targets: tuple[str, ...] = ()  # empty: all enabled targets
    events: tuple[Event, ...] = ()
    events_query: str | None = None
    query_threads: int = 4
    config_path: str | None = None  # for the accept commands the report prints


@dataclass
class PlotData:
    """What the HTML report draws. ``kind``: ``time`` (observed against the expected band over time: stored mode,
    once, backtest), ``distribution`` (window and selector modes: the candidate over time beside the baseline's and
    the candidate's values, the two samples the test compared) or ``builds`` (one level per build with the mean
    between change points; ``timestamps`` are positions, ``builds`` their ids, ``marks`` the change points)."""

    timestamps: np.ndarray
    values: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    candidate_start: float
    kind: str = "time"
    baseline_values: np.ndarray | None = None
    builds: tuple[str, ...] = ()
    marks: tuple[float, ...] = ()


@dataclass(frozen=True)
class BudgetOutcome:
    statistic: str
    observed: float
    max: float | None
    min: float | None

    @property
    def passed(self) -> bool:
        too_high = self.max is not None and self.observed > self.max
        too_low = self.min is not None and self.observed < self.min
        return not (too_high or too_low)

    def describe(self) -> str:
        if self.max is not None and self.observed > self.max:
            return f"{self.statistic} {self.observed:.4g} > max {self.max:.4g}"
        if self.min is not None and self.observed < self.min:
            return f"{self.statistic} {self.observed:.4g} < min {self.min:.4g}"
        return f"{self.statistic} {self.observed:.4g} within budget"

    def suggestion(self) -> str:
        if self.max is not None and self.observed > self.max:
            return f"max to {_round_up(self.observed * 1.05)}"
        if self.min is not None and self.observed < self.min:
            return f"min to {_round_down(self.observed * 0.95)}"
        return ""


@dataclass
class SeriesCheck:
    target: str
    labels: dict[str, str]
    verdict: str = UNDECIDED
    severity: str = "none"
    fail_on: str = "significant"
    reason: str = ""
    comparison: stats.Comparison | None = None
    q_value: float | None = None
    baseline_mean: float | None = None
    candidate_mean: float | None = None
    budget: BudgetOutcome | None = None
    change_start: float | None = None
    cause: Event | None = None
    recommendations: list = field(default_factory=list)
    plot: PlotData | None = None
    baseline_source: str = ""
    direction: str | None = None  # builds mode: the metric's direction
    change_build: str | None = None  # builds mode: the first build at the new level
    change_points: list | None = None  # builds mode: every change of the history (builds.BuildChange)
    change_data: tuple | None = None  # (values centred on the baseline, times, values before the candidate)

    @property
    def key(self) -> str:
        return series_key(self.labels)


@dataclass(frozen=True)
class TargetError:
    target: str
    kind: str  # query_failed | prometheus_unavailable
    message: str


@dataclass
class CheckResult:
    options: CheckOptions
    started_at: float
    finished_at: float = 0.0
    series: list[SeriesCheck] = field(default_factory=list)
    errors: list[TargetError] = field(default_factory=list)
    exit_code: int = EXIT_PASS
    warnings: list[str] = field(default_factory=list)  # the run's caveats, e.g. a baseline over other hours

    def count(self, verdict: str) -> int:
        return sum(1 for s in self.series if s.verdict == verdict)


# ---------------------------------------------------------------- data per series
@dataclass
class Pair:
    """Reference and recent samples of one series, ready for the statistics."""

    labels: dict[str, str]
    reference: np.ndarray
    recent: np.ndarray
    recent_raw: np.ndarray  # candidate values as observed (budgets use these)
    expected_level: float
    baseline_mean: float
    change_values: np.ndarray  # reference tail + recent, for locating the change start
    change_times: np.ndarray
    reference_tail: int
    plot: PlotData
    problem: str = ""  # set when the pair cannot be compared
    autocorrelation: float = 0.0  # of the reference noise; deflates the sample sizes in the test
    source: str = "window"  # where the baseline came from: window | selector | store vN | fitted here on ...


def step_for(window: Window, options: CheckOptions) -> float:
    """The coarsest of ``min_step`` and the step that keeps the window below ``max_points``."""
    return float(max(options.min_step, math.ceil(window.length / max(options.max_points - 1, 1))))


def _strip(labels: dict[str, str], ignored: set[str]) -> str:
    return series_key({k: v for k, v in labels.items() if k not in ignored})


def _finite(values: np.ndarray) -> np.ndarray:
    return values[np.isfinite(values)]


def baseline_level(values: np.ndarray) -> float:
    """What change % is relative to: the median, or the mean magnitude when the median is 0 (an error rate that
    is mostly zero); NaN when the baseline is all zeros, where a relative change has no meaning."""
    if not values.size:
        return math.nan
    for level in (float(np.median(values)), float(np.mean(np.abs(values)))):
        if level != 0:
            return level
    return math.nan


def tail_length(candidate: Window) -> float:
    """How far before the candidate the change start is looked for: a change that began hours before the
    candidate window (the load test ran after it) is named where it began."""
    return max(4.0 * candidate.length, TAIL_MIN)


def _window_pair(reference: Series, recent: Series, baseline: Window, candidate: Window) -> Pair:
    ref = _finite(reference.values)
    level = baseline_level(ref)
    contiguous = baseline.end >= candidate.start - candidate.length
    tail = reference.tail(candidate.start - tail_length(candidate)) if contiguous else reference.tail(math.inf)
    shown = reference.tail(candidate.start - 3 * candidate.length) if contiguous else tail
    times = np.concatenate((shown.timestamps, recent.timestamps))
    values = np.concatenate((shown.values, recent.values))
    nothing = np.full(times.size, np.nan)
    plot = PlotData(times, values, np.full(times.size, level), nothing, nothing, candidate.start)
    plot.kind, plot.baseline_values = "distribution", reference.values
    return Pair(
        recent.labels,
        reference.values,
        recent.values,
        recent.values,
        level,
        level,
        np.concatenate((tail.values, recent.values)),
        np.concatenate((tail.timestamps, recent.timestamps)),
        len(tail.timestamps),
        plot,
        autocorrelation=noise_autocorrelation(reference.values),
    )


def _stored_pair(history: Series, recent: Series, baseline: FittedBaseline, candidate: Window) -> Pair:
    """Residuals against residuals: the baseline's reference residuals (the end of its training history,
    forecast-style) against the candidate minus the expected values for its own time of day and week."""
    past, now = baseline.predict(history.timestamps), baseline.predict(recent.timestamps)
    history_residuals, residual = history.values - past.expected, recent.values - now.expected
    reference = baseline.reference.residuals if baseline.reference is not None else history_residuals
    expected = float(np.nanmean(now.expected))
    shown = history.tail(candidate.start - 3 * candidate.length)
    shown_band = baseline.predict(shown.timestamps)
    tail = int(np.sum(history.timestamps >= candidate.start - tail_length(candidate)))
    joined = [
        np.concatenate(pair)
        for pair in (
            (shown.timestamps, recent.timestamps),
            (shown.values, recent.values),
            (shown_band.expected, now.expected),
            (shown_band.lower, now.lower),
            (shown_band.upper, now.upper),
        )
    ]
    change_values = np.concatenate((history_residuals[len(history_residuals) - tail :], residual))
    change_times = np.concatenate((history.timestamps[len(history.timestamps) - tail :], recent.timestamps))
    plot = PlotData(*joined, candidate.start)
    rho = baseline.reference.autocorrelation if baseline.reference is not None else noise_autocorrelation(reference)
    return Pair(
        recent.labels,
        reference,
        residual,
        recent.values,
        expected,
        expected,
        change_values,
        change_times,
        tail,
        plot,
        autocorrelation=rho,
    )


def noise_autocorrelation(values: np.ndarray, smoothing: int = 11) -> float:
    """Lag-1 autocorrelation of the reference after removing its slow movement (a centred moving average),
    so a daily cycle or a level shift does not pass for dependent noise and swallow the sample size."""
    finite = values[np.isfinite(values)]
    if finite.size < 3 * smoothing:
        return stats.lag1_autocorrelation(finite)
    smooth = np.convolve(finite, np.ones(smoothing) / smoothing, mode="valid")
    half = smoothing // 2
    return stats.lag1_autocorrelation(finite[half : half + smooth.size] - smooth)


def change_start(values: np.ndarray, times: np.ndarray, reference_tail: int, direction: str = "both") -> float | None:
    """Where the level shift the candidate shows began, from a sequence centred on the baseline (0 = as expected)
    that holds the data before the candidate (``reference_tail`` values) and the candidate: the change points of
    the whole sequence (``analyzer.gate.changepoints``) and the start of the latest worse level, moved back over
    earlier segments at least half-way there. So it can lie before the candidate window when the change began
    earlier. Without such a change point: where the mean shifts most (one binary-segmentation split), not before
    the candidate window."""
    keep = np.isfinite(values)
    values, times = values[keep], times[keep]
    n = values.size
    if n < 4:
        return None
    points = find_change_points(values, min_last=2)
    start = start_of_latest_shift(values, points, direction) if points else None
    if start is not None:
        return float(times[start])
    first_candidate = int(np.sum(keep[:reference_tail])) if reference_tail else 0
    sums = np.cumsum(values)
    k = np.arange(1, n)
    before, after = sums[:-1] / k, (sums[-1] - sums[:-1]) / (n - k)
    statistic = np.abs(after - before) * np.sqrt(k * (n - k) / n)
    best = int(np.argmax(statistic)) + 1
    return float(times[min(max(best, first_candidate), n - 1)])


# ---------------------------------------------------------------- the check


def significantly_worse(item: SeriesCheck, alpha: float) -> bool:
    """The item's change is worse and significant after the run's false-discovery control."""
    comparison = item.comparison
    return comparison is not None and item.q_value is not None and item.q_value <= alpha and comparison.worse


def settle_verdict(item: SeriesCheck, regressed: bool, decided: bool, thresholds: stats.SeverityThresholds) -> bool:
    """The item's severity (when ``regressed``) and verdict: fail at or above its ``fail_on`` tier or over its
    budget, warn below it, pass when ``decided``, else undecided. Returns whether only the budget failed it."""
    if regressed:
        item.severity = stats.severity_for(item.comparison.change_pct, thresholds)  # type: ignore[union-attr]
    budget_breached = item.budget is not None and not item.budget.passed
    gated = item.severity != "none" and TIERS.index(item.severity) >= TIERS.index(item.fail_on)
    if gated or budget_breached:
        item.verdict = FAIL
    elif item.severity != "none":
        item.verdict = WARN
    elif decided:
        item.verdict = PASS
    else:
        item.verdict = UNDECIDED
    return budget_breached and not gated


class Checker:
    def __init__(
        self,
        config: Config,
        reader: PrometheusReader,
        options: CheckOptions,
        pool: FitPool | None = None,
        clock=time.time,
    ) -> None:
        self.config = config
        self.reader = reader
        self.options = options
        self.pool = pool
        self.clock = clock
        self._pool_lock = threading.Lock()

    def targets(self) -> list[TargetConfig]:
        wanted = set(self.options.targets)
        unknown = wanted - {t.name for t in self.config.targets}
        if unknown:
            raise ValueError(f"unknown target(s): {', '.join(sorted(unknown))}")
        return [t for t in self.config.targets if t.check.enabled and (not wanted or t.name in wanted)]

    def run(self) -> CheckResult:
        result = CheckResult(self.options, self.clock())
        if self.options.baseline_parts:
            result.warnings += coverage_warnings(
                self.options.candidate, self.options.baseline_parts, self.config.timezone
            )
        targets = self.targets()
        events = list(self.options.events) + self._query_events(result)
        with ThreadPoolExecutor(max_workers=self.options.query_threads) as threads:
            gathered = list(threads.map(self._gather_safely, targets))
        for target, (pairs, error) in zip(targets, gathered, strict=True):
            if error is not None:
                result.errors.append(error)
                continue
            result.series.extend(self._compare(target, pair) for pair in pairs)
        self._control_fdr(result.series)
        for item, target in ((s, self.config.target(s.target)) for s in result.series):
            self._decide(item, target, events)
        result.finished_at = self.clock()
        result.exit_code = exit_code(result)
        return result

    # ------------------------------------------------------------ reading
    def _query_events(self, result: CheckResult) -> list[Event]:
        """Changes of the events query over the candidate window and the time before it where the change start is
        looked for (``tail_length``): a regression's cause is a change shortly before it starts."""
        if not self.options.events_query:
            return []
        candidate = self.options.candidate
        span = candidate.end - candidate.start + tail_length(candidate)
        step = max(step_for(candidate, self.options), math.ceil(span / MAX_EVENT_POINTS))  # as fine as the candidate
        try:
            series = self.reader.query_range(
                self.options.events_query, candidate.start - tail_length(candidate), candidate.end, step
            )
        except PrometheusError as exc:
            kind = "query_failed" if isinstance(exc, QueryError) else "prometheus_unavailable"
            result.errors.append(TargetError("events-query", kind, str(exc)))
            return []
        return events_from_series(series, self.options.events_query)

    def _gather_safely(self, target: TargetConfig) -> tuple[list[Pair], TargetError | None]:
        try:
            return self._gather(target), None
        except QueryError as exc:
            return [], TargetError(target.name, "query_failed", str(exc))
        except PrometheusError as exc:
            return [], TargetError(target.name, "prometheus_unavailable", str(exc))

    def _read(self, query: str, window: Window, step: float) -> list[Series]:
        return self.reader.query_range(query, window.start, window.end, step)

    def _read_parts(self, query: str, parts: Sequence[Window]) -> list[Series]:
        """The series of every window joined in time order (one window: just that read)."""
        joined: dict[str, list[Series]] = {}
        for part in sorted(parts, key=lambda w: w.start):
            for series in self._read(query, part, step_for(part, self.options)):
                joined.setdefault(series.key, []).append(series)
        return [Series(pieces[0].labels, np.concatenate([p.timestamps for p in pieces]),
                       np.concatenate([p.values for p in pieces])) for pieces in joined.values()]  # fmt: skip

    def _gather(self, target: TargetConfig) -> list[Pair]:
        options = self.options
        candidate_query = (
            inject_matchers(target.query, options.candidate_matchers) if options.candidate_matchers else target.query
        )
        recent = self._read(candidate_query, options.candidate, step_for(options.candidate, options))
        if options.mode == "stored":
            return self._stored_pairs(target, candidate_query, recent)
        baseline_window = options.baseline or options.candidate
        baseline_query = (
            inject_matchers(target.query, options.baseline_matchers) if options.baseline_matchers else target.query
        )
        reference = self._read_parts(baseline_query, options.baseline_parts or (baseline_window,))
        ignored = {m.label for m in (*options.baseline_matchers, *options.candidate_matchers)}
        by_key = {_strip(s.labels, ignored): s for s in reference}
        pairs = []
        for series in recent:
            partner = by_key.pop(_strip(series.labels, ignored), None)
            if partner is None:
                pairs.append(_missing(series, "no baseline series with these labels"))
            else:
                pairs.append(_window_pair(partner, series, baseline_window, options.candidate))
        pairs.extend(_missing(s, "no candidate data (series absent in the candidate window)") for s in by_key.values())
        return pairs

    def _stored_pairs(self, target: TargetConfig, query: str, recent: list[Series]) -> list[Pair]:
        """Active baselines from the baseline store when the config has a state_dir holding one; every other
        series gets a baseline fitted here on the history before the candidate window."""
        stored, versions = self._stored_baselines(target)
        missing = [s for s in recent if s.key not in stored]
        tail = tail_length(self.options.candidate)
        history_length = (self.options.history or target.history) if missing else tail
        window = Window(self.options.candidate.start - history_length, self.options.candidate.start, "history")
        step = target.step if missing else step_for(window, self.options)
        # the candidate window never trains its own baseline
        history = {s.key: s.before(window.end) for s in self._read(query, window, step)}
        fitted, problems = self._fit(target, [history[s.key] for s in missing if s.key in history], history_length)
        pairs = []
        for series in recent:
            baseline = stored.get(series.key) or fitted.get(series.key)
            past = history.get(series.key) or Series(series.labels, np.array([]), np.array([]))
            if baseline is None:
                pairs.append(_missing(series, problems.get(series.key, "no baseline history before the candidate")))
            else:
                pair = _stored_pair(past, series, baseline, self.options.candidate)
                pair.source = (
                    f"store v{versions[series.key]}"
                    if series.key in stored
                    else f"fitted here on {format_duration(history_length)} before the candidate"
                )
                pairs.append(pair)
        return pairs

    def _stored_baselines(self, target: TargetConfig) -> tuple[dict[str, FittedBaseline], dict[str, int]]:
        """The active baselines of the service's store (``state_dir``) with their versions; none without one."""
        if not self.config.state_dir:
            return {}, {}
        from analyzer.state.store import BaselineStore, StoreError

        try:
            store = BaselineStore.in_dir(self.config.state_dir, create=False)
        except StoreError:
            return {}, {}
        try:
            active = [b for b in store.active(target.name) if b.baseline is not None]
        finally:
            store.close()
        return {b.key: b.baseline for b in active}, {b.key: b.version for b in active}

    def _fit(self, target: TargetConfig, history: list[Series], length: float) -> tuple[dict, dict[str, str]]:
        context = FitContext(
            step=target.step,
            timezone=self.config.timezone,
            seasonality=target.seasonality,
            band_sigmas=target.band_sigmas,
        )
        requests, problems, by_key = [], {}, {s.key: s for s in history}
        for series in history:
            problem = insufficiency(series.values, target.step, min(target.min_history, length), target.max_gap_ratio)
            if problem:
                problems[series.key] = f"baseline history: {problem}"
            else:
                requests.append(FitRequest(series.key, target.model, series.timestamps, series.values, context))
        if not requests:
            return {}, problems
        if len(requests) <= IN_PROCESS_FITS or self.pool is None:  # starting worker processes costs seconds
            outcomes = FitPool(workers=1).fit_all(requests, self.config.schedule.fit_timeout, NullTelemetry())
        else:
            with self._pool_lock:  # targets are read in threads; one batch at a time goes to the shared pool
                outcomes = list(self.pool.fit_all(requests, self.config.schedule.fit_timeout, NullTelemetry()))
        fitted = {}
        for outcome in outcomes:
            if outcome.baseline is None:
                problems[outcome.key] = f"baseline fit failed: {outcome.error}"
            else:
                series = by_key[outcome.key]
                fitted[outcome.key] = attach_reference(outcome.baseline, series.timestamps, series.values)
        return fitted, problems

    # ------------------------------------------------------------ statistics and gating
    def _compare(self, target: TargetConfig, pair: Pair) -> SeriesCheck:
        item = SeriesCheck(target.name, pair.labels, fail_on=target.check.fail_on or self.options.fail_on)
        item.plot = pair.plot
        item.baseline_source = (
            "selector" if self.options.mode == "selector" and pair.source == "window" else pair.source
        )
        rec = _finite(pair.recent_raw)
        item.candidate_mean = float(rec.mean()) if rec.size else None
        item.baseline_mean = pair.baseline_mean if math.isfinite(pair.baseline_mean) else None
        if target.check.budget is not None and rec.size:
            item.budget = evaluate_budget(target.check.budget, rec)
        if pair.problem:
            item.reason = pair.problem
            return item
        rho = pair.autocorrelation
        try:
            item.comparison = stats.compare_windows(
                pair.reference,
                pair.recent,
                pair.expected_level,
                target.direction,
                self.options.test,
                autocorrelation=rho,
                confidence_level=self.options.confidence_level,
            )
        except stats.InsufficientData as exc:
            item.reason = f"insufficient data: {exc}"
            return item
        if not math.isfinite(item.comparison.change_pct):
            item.reason = "the baseline level is 0, so change % is undefined: give this target a budget"
        # located later, for fail and warn only (a change-point search per series costs milliseconds)
        item.change_data = (pair.change_values - np.nanmedian(pair.reference), pair.change_times, pair.reference_tail)
        return item

    def _control_fdr(self, items: Sequence[SeriesCheck]) -> None:
        compared = [s for s in items if s.comparison is not None]
        q_values = stats.benjamini_hochberg([s.comparison.p_value for s in compared])  # type: ignore[union-attr]
        for item, q in zip(compared, q_values, strict=True):
            item.q_value = float(q)

    def _decide(self, item: SeriesCheck, target: TargetConfig, events: list[Event]) -> None:
        regressed = significantly_worse(item, self.options.alpha)
        only_budget = settle_verdict(item, regressed, item.comparison is not None, self.options.thresholds)
        if only_budget and not item.reason:
            item.reason = "budget breached"
        if item.verdict in (FAIL, WARN):
            if item.change_data is not None:
                item.change_start = change_start(*item.change_data, target.direction)
            self._explain(item, events)
        item.change_data = None

    def _explain(self, item: SeriesCheck, events: list[Event]) -> None:
        options = self.options
        if item.change_start is None:
            item.change_start = options.candidate.start
        candidates = list(events)
        if options.mode == "selector":
            old = ",".join(map(str, options.baseline_matchers)) or "the baseline"
            new = ",".join(map(str, options.candidate_matchers)) or "the candidate"
            candidates.append(Event(options.candidate.start, f"version change {{{old}}} -> {{{new}}}", "selector"))
        tolerance = step_for(options.candidate, options)
        item.cause = likely_cause(candidates, item.change_start, tolerance)
        later = None if item.cause else first_after(candidates, item.change_start, tolerance)
        budget = item.budget if item.budget is not None and not item.budget.passed else None
        item.recommendations = recommend(
            Situation(
                item.target,
                item.key,
                options.mode,
                item.change_start,
                item.cause,
                item.severity != "none",
                budget.describe() if budget else None,
                budget.suggestion() if budget else None,
                "{" + ",".join(map(str, options.candidate_matchers)) + "}",
                later,
                options.config_path,
                options.candidate,
                item.baseline_source.startswith("store v"),
                max(5 * tolerance, 0.1 * options.candidate.length),
            )
        )


def _missing(series: Series, problem: str) -> Pair:
    empty = np.array([])
    plot = PlotData(
        series.timestamps,
        series.values,
        *(np.full(len(series.values), np.nan) for _ in range(3)),
        float(series.timestamps[0]) if len(series.timestamps) else 0.0,
    )
    return Pair(series.labels, empty, empty, series.values, math.nan, math.nan, empty, empty, 0, plot, problem)


STATISTICS = {
    "mean": np.mean,
    "median": np.median,
    "p90": lambda v: np.percentile(v, 90),
    "p95": lambda v: np.percentile(v, 95),
    "p99": lambda v: np.percentile(v, 99),
    "min": np.min,
    "max": np.max,
    "last": lambda v: v[-1],
}


def evaluate_budget(budget: Budget, values: np.ndarray) -> BudgetOutcome:
    """The budget's statistic over the candidate window's finite values."""
    return BudgetOutcome(budget.statistic, float(STATISTICS[budget.statistic](values)), budget.max, budget.min)


def exit_code(result: CheckResult) -> int:
    """2 beats 1 beats 3 beats 0: a broken gate must be fixed first; a proven regression outranks doubt."""
    if any(e.kind == "query_failed" for e in result.errors):
        return EXIT_USAGE
    if result.count(FAIL):
        return EXIT_REGRESSION
    undecided = result.count(UNDECIDED) or result.errors or not result.series
    if undecided and result.options.undecided == "fail":
        return EXIT_UNDECIDED
    return EXIT_PASS


def _unit(value: float) -> float:
    """The value of the second significant digit (0.34 -> 0.01), so suggestions read like 0.36."""
    return 10.0 ** (math.floor(math.log10(abs(value))) - 1) if value else 1.0


def _round_up(value: float) -> float:
    unit = _unit(value)
    return float(f"{math.ceil(value / unit) * unit:.6g}")


def _round_down(value: float) -> float:
    unit = _unit(value)
    return float(f"{math.floor(value / unit) * unit:.6g}")
