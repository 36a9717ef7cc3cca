"""The long-running service: an APScheduler with a refit job and a score job.

Each job has ``max_instances=1`` and ``coalesce=True``, so runs never overlap and a run that would start while
the previous one is still going is skipped and counted (``perfsentinel_runs_total{outcome="skipped"}``).
The refit pass runs first at start, then ``REFIT_SLICES`` times per ``refit_every``; each pass refits only the
series whose slot in the interval came up (analyzer.state.lifecycle), so fits spread over the interval and a restart
with stored baselines does not refit everything at once. Scoring runs every ``score_every``.

A score run in which no target could be read (Prometheus down) is published, so every target's error is visible,
but counted as ``outcome="failure"``: ``perfsentinel_last_success_timestamp_seconds{task="score"}`` stops moving
and PerfSentinelAnalysisStale fires during an outage.

Each run logs one line with its figures (analyzer.service.runlog: series by status, new samples, warm-up, fits,
failed targets, duration); APScheduler's own "Running job" / "executed successfully" lines are DEBUG.

SIGTERM/SIGINT stop the scheduler, kill the fit workers (the running refit ends without the fits it has not
collected), wait a little for the running job, store the series' score records and return; a job interrupted by the
stop is neither an error nor a failed run.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from analyzer.results import Snapshot
from analyzer.service import heap
from analyzer.service.pipeline import Analyzer
from analyzer.service.runlog import (
    RunCounter,
    RunFigures,
    log_run,
    quiet_scheduler_chatter,
    refit_figures,
    score_figures,
)
from analyzer.state.lifecycle import REFIT_SLICES
from analyzer.telemetry import Telemetry

log = logging.getLogger(__name__)
STOP_GRACE_SECONDS = 10.0  # how long a stop waits for the running job (a request in flight) before it stores records


class NothingAnalysed(RuntimeError):
    """A score run in which every target failed: published, but a failed run (with its figures for the log)."""

    def __init__(self, problem: str, figures: RunFigures, seconds: float) -> None:
        super().__init__(problem)
        self.figures, self.seconds = figures, seconds


class Service:
    def __init__(self, analyzer: Analyzer, telemetry: Telemetry, publish: Callable[[Snapshot], None]) -> None:
        self.analyzer = analyzer
        self.telemetry = telemetry
        self.counter = RunCounter(analyzer.telemetry)  # counts the fits and failed targets of each refit run
        analyzer.telemetry = self.counter
        self._latest: dict[str, float] = {}  # target -> its newest scored sample, for "new samples" in the log
        quiet_scheduler_chatter()
        self.publish = publish
        self.stopped = threading.Event()
        self._running = 0  # jobs in progress; stop() waits for them (bounded) before it stores the records
        self._idle = threading.Condition()
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True})
        self.scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)

    # ------------------------------------------------------------ jobs
    def _timed(self, job: str, action: Callable[[], None]) -> None:
        if self.stopped.is_set():
            return
        started = time.monotonic()
        with self._idle:
            self._running += 1
        try:
            action()
        except NothingAnalysed as exc:
            log_run(job, exc.figures, exc.seconds, logging.WARNING, str(exc))
            self.telemetry.run_finished(job, "failure", time.monotonic() - started)
        except Exception as exc:  # a failed run is reported and the next one tries again
            if self.stopped.is_set():  # what a stop interrupts is no failure of the analysis
                log.info("%s run ended by the stop (%s: %s)", job, type(exc).__name__, exc)
            else:
                log.exception("%s run failed", job)
                self.telemetry.run_finished(job, "failure", time.monotonic() - started)
        else:
            if not self.stopped.is_set():
                self.telemetry.run_finished(job, "success", time.monotonic() - started)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def refit_job(self) -> None:
        self._timed("refit", self._refit_and_score)

    def _refit_and_score(self) -> None:
        started, before = time.monotonic(), self.counter.counts()
        try:
            self.analyzer.refit()
            heap.settle()  # the new baselines are long-lived: out of the score runs' collections
            if not self.stopped.is_set():
                states = dict(self.analyzer.states)  # a refit replaces a target's dict, never changes it
                log_run("refit", refit_figures(states, before, self.counter.counts()), time.monotonic() - started)
            self.score_job()  # publish fresh scores from the new baselines at once
        finally:
            if not self.stopped.is_set():
                self._start_scoring()

    def _start_scoring(self, first_run: datetime | None = None) -> None:
        """The score job starts when there is something to score: at once when baselines were loaded from the
        store, else after the first refit pass (scores before it would all be ``pending``)."""
        if self.scheduler.get_job("score") is None:
            every = IntervalTrigger(seconds=self.analyzer.config.schedule.score_every)
            self.scheduler.add_job(self.score_job, every, id="score", **({"next_run_time": first_run} if first_run
                                                                          else {}))  # fmt: skip

    def score_job(self) -> None:
        self._timed("score", self._score_and_publish)

    def _score_and_publish(self) -> None:
        started = time.monotonic()
        snapshot = self.analyzer.score()
        if self.stopped.is_set():
            return  # scored while stopping (reads cancelled): not an analysis worth publishing
        self.publish(snapshot)  # even when every target failed: their errors are what there is to see
        figures, self._latest = score_figures(snapshot, self._latest)
        if snapshot.targets and not any(outcome.success for outcome in snapshot.targets):
            failed = "; ".join(f"{o.target}: {o.error}" for o in snapshot.targets[:3])
            more = f" (and {len(snapshot.targets) - 3} more)" if len(snapshot.targets) > 3 else ""
            raise NothingAnalysed(f"no target could be read: {failed}{more}", figures, time.monotonic() - started)
        log_run("score", figures, time.monotonic() - started)

    def _on_skipped(self, event: JobEvent) -> None:
        log.warning("%s run skipped: the previous one is still running", event.job_id)
        self.telemetry.run_finished(event.job_id, "skipped", 0.0)

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        schedule = self.analyzer.config.schedule
        self.scheduler.add_job(
            self.refit_job,
            IntervalTrigger(seconds=schedule.refit_every / REFIT_SLICES),
            id="refit",
            next_run_time=_now(),
        )
        if any(s.baseline is not None for states in self.analyzer.states.values() for s in states.values()):
            self._start_scoring(first_run=_now())  # stored baselines: score before the first refit pass
        self.scheduler.start()

    def stop(self) -> None:
        self.stopped.set()  # before anything else: what the stop interrupts is reported as such, not as an error
        self.analyzer.reader.cancelled.set()  # a running refit ends at its next request instead of finishing
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.analyzer.pool.shutdown()  # kills busy workers; the running refit keeps the fits it has collected
        with self._idle:
            if not self._idle.wait_for(lambda: self._running == 0, STOP_GRACE_SECONDS):
                log.warning("a job is still running %gs after the stop; storing the score records anyway",
                            STOP_GRACE_SECONDS)  # fmt: skip
        self.analyzer.save_records()  # what was scored since each series' last refit
        self.analyzer.close()

    def run_until_signalled(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopped.set())
        self.start()
        self.stopped.wait()
        self.stop()


def _now() -> datetime:
    return datetime.now(UTC)
