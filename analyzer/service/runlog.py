"""What a scheduled run did, in one log line: the figures an operator looks for (series by status, warm-up, fits,
failed targets, new samples, duration), as text and as structured fields for ``--log-format json``.

APScheduler's own lines ("Running job ...", "... executed successfully", "Added job ...") say only that a job ran;
they made up most of the log, so they are logged at DEBUG (``quiet_scheduler_chatter``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from analyzer.results import ERROR, INSUFFICIENT_DATA, OK, Snapshot

log = logging.getLogger("analyzer.service.scheduler")
CHATTY_LOGGERS = ("apscheduler.executors.default", "apscheduler.scheduler")
TOO_SHORT = "too_short"  # analyzer.models.quality.TOO_SHORT, not imported: the models are not needed here


class SchedulerChatter(logging.Filter):
    """Turns APScheduler's INFO records into DEBUG ones (shown with --log-level DEBUG only); warnings and errors
    pass as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_scheduler_chatter() -> None:
    for name in CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, SchedulerChatter) for f in logger.filters):
            logger.addFilter(SchedulerChatter())


class RunCounter:
    """Telemetry that passes every call on and counts fits and failing targets, so that a refit run can say what
    it did (read ``counts()`` before and after the run)."""

    def __init__(self, inner) -> None:  # inner: analyzer.telemetry.Telemetry
        self.inner = inner
        self._lock = threading.Lock()
        self._fits: Counter[str] = Counter()
        self._failed_targets: dict[str, int] = {}  # target -> stage errors so far

    def counts(self) -> tuple[Counter[str], dict[str, int]]:
        with self._lock:
            return Counter(self._fits), dict(self._failed_targets)

    def prometheus_request(self, outcome: str, seconds: float) -> None:
        self.inner.prometheus_request(outcome, seconds)

    def stage_error(self, stage: str, target: str) -> None:
        with self._lock:
            self._failed_targets[target] = self._failed_targets.get(target, 0) + 1
        self.inner.stage_error(stage, target)

    def fit_finished(self, model: str, outcome: str, seconds: float) -> None:
        with self._lock:
            self._fits[outcome] += 1
        self.inner.fit_finished(model, outcome, seconds)

    def fallback(self, from_model: str, to_model: str) -> None:
        with self._lock:
            self._fits["fallback"] += 1
        self.inner.fallback(from_model, to_model)

    def run_finished(self, job: str, outcome: str, seconds: float) -> None:
        self.inner.run_finished(job, outcome, seconds)

    def store_error(self, operation: str) -> None:
        self.inner.store_error(operation)


@dataclass(frozen=True)
class RunFigures:
    """One run's figures: ``text`` for the log line, ``fields`` for a JSON log."""

    text: str
    fields: dict[str, object]


def score_figures(snapshot: Snapshot, previous_latest: Mapping[str, float]) -> tuple[RunFigures, dict[str, float]]:
    """Series by status, how many have a sample newer than anything their target had in the previous run, and the
    failed targets; also each target's newest sample time (the next run's ``previous_latest``)."""
    statuses = Counter(result.status for result in snapshot.results)
    latest: dict[str, float] = {}
    for result in snapshot.results:
        if result.timestamp is not None and result.timestamp > latest.get(result.target, float("-inf")):
            latest[result.target] = result.timestamp
    new = sum(1 for r in snapshot.results
              if r.timestamp is not None and r.timestamp > previous_latest.get(r.target, float("-inf")))  # fmt: skip
    failed = [outcome.target for outcome in snapshot.targets if not outcome.success]
    fields = {"series": len(snapshot.results), "ok": statuses[OK], "insufficient_data": statuses[INSUFFICIENT_DATA],
              "error": statuses[ERROR], "new_samples": new, "targets": len(snapshot.targets),
              "targets_failed": len(failed)}  # fmt: skip
    failures = _failed_text(failed, len(snapshot.targets))
    text = (f"{fields['series']} series ({statuses[OK]} ok, {statuses[INSUFFICIENT_DATA]} insufficient_data, "
            f"{statuses[ERROR]} error), {new} with a new sample, {failures}")  # fmt: skip
    return RunFigures(text, fields), latest


def refit_figures(states: Mapping[str, Mapping[str, object]], before: tuple[Counter[str], dict[str, int]],
                  after: tuple[Counter[str], dict[str, int]]) -> RunFigures:  # fmt: skip
    """Series after the pass (with a baseline, warming up, neither), the fits of the pass (a fit that fell back to
    another model counts once, as a success), and the targets that failed in it. ``states``: target -> series key
    -> SeriesState (analyzer.service.pipeline)."""
    all_states = [state for by_key in states.values() for state in by_key.values()]
    based = sum(1 for s in all_states if getattr(s, "baseline", None) is not None)
    warming = sum(
        1 for s in all_states if getattr(s, "baseline", None) is None and getattr(s, "reason", "") == TOO_SHORT
    )
    fits = after[0] - before[0]
    failed_fits = max(0, fits["failure"] - fits["fallback"]) + fits["timeout"]
    failed = sorted(t for t, n in after[1].items() if n > before[1].get(t, 0))
    fields = {"series": len(all_states), "with_baseline": based, "warming_up": warming,
              "without_baseline": len(all_states) - based - warming, "fits": fits["success"] + failed_fits,
              "fits_failed": failed_fits, "fallbacks": fits["fallback"], "targets": len(states),
              "targets_failed": len(failed)}  # fmt: skip
    text = (f"{len(all_states)} series ({based} with a baseline, {warming} warming up, "
            f"{fields['without_baseline']} without), {fields['fits']} fits ({failed_fits} failed, "
            f"{fits['fallback']} fell back to another model), {_failed_text(failed, len(states))}")  # fmt: skip
    return RunFigures(text, fields)


def _failed_text(failed: Iterable[str], targets: int) -> str:
    failed = list(failed)
    names = f" ({', '.join(failed[:3])}{' ...' if len(failed) > 3 else ''})" if failed else ""
    return f"{len(failed)} of {targets} targets failed{names}"


def log_run(job: str, figures: RunFigures, seconds: float, level: int = logging.INFO, problem: str = "") -> None:
    """The run's one line: ``<job> run: <figures>; took <seconds> s`` (``<job> run failed: <problem>; ...`` for a
    failed one), with the figures as fields for a JSON log."""
    fields = {"job": job, "outcome": "failure" if problem else "success", "duration_seconds": round(seconds, 3),
              **figures.fields}  # fmt: skip
    if problem:
        fields["problem"] = problem
    head = f"{job} run failed: {problem}; " if problem else f"{job} run: "
    log.log(level, "%s%s; took %.2f s", head, figures.text, seconds, extra={"fields": fields})
