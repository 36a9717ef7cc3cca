"""Runs baseline fits, in a process pool sized to the cores, with a time limit and a fallback model.

A fit that raises, or that does not finish in time, yields a FitOutcome with the error instead of
stopping the batch. When the configured model fails, the next model of its fallback chain takes its place
(prophet -> stl -> profile: each step simpler and with no optimiser to fail) and the fallback is recorded.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

import numpy as np

from analyzer.models import FitContext, FitError, FittedBaseline, get_model, resolve_model_name
from analyzer.telemetry import Telemetry

log = logging.getLogger(__name__)
FALLBACK_MODEL = "profile"
FALLBACKS = {"prophet": "stl", "stl": "profile", "mstl": "profile"}
IN_FLIGHT_PER_WORKER = 2  # fits submitted per worker at a time (one running, one queued)


def fallback_for(model: str) -> str | None:
    """The model that replaces ``model`` when it fails; None at the end of the chain."""
    return FALLBACKS.get(model, None if model == FALLBACK_MODEL else FALLBACK_MODEL)


@dataclass
class FitRequest:
    key: str
    model: str
    timestamps: np.ndarray
    values: np.ndarray
    context: FitContext
    options: object = None  # model-specific settings, e.g. analyzer.models.prophet.ProphetOptions
    # what the caller wants computed from the fitted baseline in the worker too: after(baseline, request), a
    # module-level function (it is pickled by name), whose result becomes FitOutcome.extra; ``learning`` is its input
    after: Callable[[FittedBaseline, FitRequest], object] | None = None
    learning: object = None


@dataclass
class FitOutcome:
    key: str
    model: str
    baseline: FittedBaseline | None
    seconds: float
    error: str = ""
    note: str = ""
    extra: object = None  # FitRequest.after's result
    request: FitRequest | None = field(default=None, repr=False)  # set in the calling process, never pickled back


def fit_one(request: FitRequest) -> FitOutcome:
    """Fit with the requested model, walking its fallback chain on failure; never raises for bad data."""
    model = resolve_model_name(request.model)
    started = time.perf_counter()
    errors: list[str] = []
    current: str | None = model
    while current is not None:
        try:
            baseline = get_model(current, request.options).fit(request.timestamps, request.values, request.context)
        except (FitError, ValueError, np.linalg.LinAlgError) as exc:
            errors.append(f"{current} fit failed: {exc}")
            current = fallback_for(current)
            continue
        note = f"{'; '.join(errors)}; fell back to {current}" if errors else ""
        extra = request.after(baseline, request) if request.after is not None else None
        return FitOutcome(request.key, model, baseline, time.perf_counter() - started, "", note, extra)
    return FitOutcome(request.key, model, None, time.perf_counter() - started, "; ".join(errors))


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ---------------------------------------------------------------- worker processes
PARENT_POLL_SECONDS = 1.0  # where pidfd_open is missing (not Linux, kernels before 5.3)


def worker_init(parent_pid: int) -> None:
    """Initializer of each fit worker.

    Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the service stops them itself (no
    KeyboardInterrupt traceback from each worker). SIGTERM keeps its default, which ProcessPoolExecutor relies on
    to end the workers of a broken pool. A watchdog thread ends the worker when the service is gone, whatever the
    way (kill -9, the OOM killer): with the forkserver start method the worker's parent is the fork server, which
    lives as long as any worker holds its end of the pipe, so neither PR_SET_PDEATHSIG nor the parent pid would
    notice. The watchdog waits on a pidfd of the service (no polling, immune to pid reuse)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        handle = os.pidfd_open(parent_pid)
    except ProcessLookupError:
        os._exit(0)  # the service died before this worker started
    except (AttributeError, OSError):
        handle = None
    threading.Thread(target=_exit_with_parent, args=(parent_pid, handle), name="parent-watchdog", daemon=True).start()


def _exit_with_parent(parent_pid: int, handle: int | None) -> None:
    if handle is not None:
        select.select([handle], [], [])  # readable once the process has exited
    else:
        while _alive(parent_pid):
            time.sleep(PARENT_POLL_SECONDS)
    os._exit(0)  # at once, even in the middle of a fit: nobody is left to take its result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FitPool:
    """``workers=1`` fits in the calling thread (tests, one-shot runs on few series); more use processes.

    ``close`` and ``shutdown`` may be called from another thread while ``fit_all`` runs (the service's SIGTERM): the
    running batch then ends at once without the fits it has not collected, and no error is reported for them."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None
        self._closed: Future = Future()  # resolved by close(): wakes a batch waiting on its fits
        self._lock = threading.Lock()
        self._shut_down = False

    def _pool(self) -> tuple[ProcessPoolExecutor, Future] | None:
        with self._lock:
            if self._shut_down:
                return None
            if self._executor is None:
                context = multiprocessing.get_context("forkserver")  # fork is unsafe beside scheduler threads
                self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context,
                                                     initializer=worker_init, initargs=(os.getpid(),))  # fmt: skip
                self._closed = Future()
            return self._executor, self._closed

    def fit_all(self, requests: Iterable[FitRequest], timeout: float, telemetry: Telemetry) -> Iterator[FitOutcome]:
        """One outcome per request as the fits finish (``outcome.request`` is its request); none at all after
        ``shutdown``. ``requests`` may be a generator: it is consumed as workers become free."""
        if self._shut_down:
            return
        outcomes = self._run_inline(requests) if self.workers == 1 else self._run_pooled(requests, timeout)
        for outcome in outcomes:
            self._report(outcome, telemetry)
            yield outcome

    @staticmethod
    def _report(outcome: FitOutcome, telemetry: Telemetry) -> None:
        if outcome.baseline is None:
            kind = "timeout" if outcome.error.startswith("timeout") else "failure"
            telemetry.fit_finished(outcome.model, kind, outcome.seconds)
            return
        telemetry.fit_finished(outcome.model, "success" if not outcome.note else "failure", outcome.seconds)
        if outcome.note:
            telemetry.fallback(outcome.model, outcome.baseline.model)
            telemetry.fit_finished(outcome.baseline.model, "success", 0.0)

    @staticmethod
    def _run_inline(requests: Iterable[FitRequest]) -> Iterator[FitOutcome]:
        for request in requests:
            outcome = fit_one(request)
            outcome.request = request
            yield outcome

    def _run_pooled(self, requests: Iterable[FitRequest], timeout: float) -> Iterator[FitOutcome]:
        """Keep ``IN_FLIGHT_PER_WORKER`` fits per worker submitted, taking the next request only when one is
        collected: the requests (each a whole history) are made as they are needed, so memory does not grow with
        the number of series, and each completion costs O(1) (a queue fed by the futures' callbacks)."""
        pool = self._pool()
        if pool is None:
            return
        executor, closed = pool
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        closed.add_done_callback(finished.put)
        pending: dict[Future, tuple[FitRequest, float]] = {}
        source = iter(requests)
        # a fit waits for at most IN_FLIGHT_PER_WORKER - 1 others on its worker before it starts
        limit = timeout * IN_FLIGHT_PER_WORKER
        while True:
            while len(pending) < IN_FLIGHT_PER_WORKER * self.workers and (request := next(source, None)):
                try:
                    future = executor.submit(fit_one, request)
                except RuntimeError:  # closed (shutdown) or broken meanwhile: the service is stopping
                    return
                pending[future] = (request, time.monotonic())
                future.add_done_callback(finished.put)
            if not pending:
                return
            oldest = min(submitted for _, submitted in pending.values())
            try:
                future = finished.get(timeout=max(0.0, oldest + limit - time.monotonic()))
            except queue.Empty:
                yield from self._expire(pending, timeout)
                return
            if future is closed:
                return  # closed from another thread: the fits not collected are simply not done
            request, _ = pending.pop(future)
            yield self._collect(future, request)

    def _expire(self, pending: dict[Future, tuple[FitRequest, float]], timeout: float) -> Iterator[FitOutcome]:
        for future, (request, _) in pending.items():
            future.cancel()
            yield FitOutcome(request.key, request.model, None, timeout, f"timeout after {timeout:g}s")
        self.close(kill=True)  # a stuck worker would keep its slot forever: start a fresh pool next time

    def _collect(self, future: Future, request: FitRequest) -> FitOutcome:
        outcome = self._result(future, request)
        outcome.request = request
        return outcome

    def _result(self, future: Future, request: FitRequest) -> FitOutcome:
        try:
            return future.result()
        except BrokenProcessPool as exc:
            with self._lock:
                self._executor = None
            return FitOutcome(request.key, request.model, None, 0.0, f"worker died: {exc}")
        except CancelledError:
            return FitOutcome(request.key, request.model, None, 0.0, "cancelled: the fit pool was closed")
        except Exception as exc:  # an unexpected bug in one fit must not lose the batch
            log.exception("fit of %s crashed", request.key)
            return FitOutcome(request.key, request.model, None, 0.0, f"{type(exc).__name__}: {exc}")

    def close(self, kill: bool = False) -> None:
        """Shut the pool down and wait for its processes to exit (none may outlive the service). A batch running
        in another thread ends at once; a later ``fit_all`` starts a fresh pool.

        ``kill`` ends busy workers with SIGKILL first: after a fit timed out, and on SIGTERM, where waiting for the
        running fits would delay the stop."""
        with self._lock:
            executor, self._executor = self._executor, None
            if not self._closed.done():
                self._closed.set_result(None)
        if executor is None:
            return
        if kill:
            for process in list((getattr(executor, "_processes", None) or {}).values()):
                if process.is_alive():
                    process.kill()
        executor.shutdown(wait=True, cancel_futures=True)

    def shutdown(self) -> None:
        """Close for good (the service stopping): busy workers are killed, the running batch ends, and ``fit_all``
        yields nothing from now on, so a refit that is still on its way starts no new workers."""
        with self._lock:
            self._shut_down = True
        self.close(kill=True)
