"""Runs baseline fits, in a process pool sized to the cores, with a time limit and a fallback model.

A fit that raises, or that does not finish in time, yields a FitOutcome with the error instead of
stopping the batch. When the configured model fails, the next model of its fallback chain takes its place
(prophet -> stl -> profile: each step simpler and with no optimiser to fail) and the fallback is recorded.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, TimeoutError, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from analyzer.models import FitContext, FitError, FittedBaseline, get_model, resolve_model_name
from analyzer.telemetry import Telemetry

log = logging.getLogger(__name__)
FALLBACK_MODEL = "profile"
FALLBACKS = {"prophet": "stl", "stl": "profile", "mstl": "profile"}


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


@dataclass
class FitOutcome:
    key: str
    model: str
    baseline: FittedBaseline | None
    seconds: float
    error: str = ""
    note: str = ""


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
        return FitOutcome(request.key, model, baseline, time.perf_counter() - started, "", note)
    return FitOutcome(request.key, model, None, time.perf_counter() - started, "; ".join(errors))


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class FitPool:
    """``workers=1`` fits in the calling thread (tests, one-shot runs on few series); more use processes."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")  # fork is unsafe beside scheduler threads
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        return self._executor

    def fit_all(self, requests: list[FitRequest], timeout: float, telemetry: Telemetry) -> Iterator[FitOutcome]:
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
        return (fit_one(request) for request in requests)

    def _run_pooled(self, requests: list[FitRequest], timeout: float) -> Iterator[FitOutcome]:
        if not requests:
            return
        futures: dict[Future, FitRequest] = {self._pool().submit(fit_one, req): req for req in requests}
        # each worker runs its share one after another, so the batch gets the per-fit limit per round
        rounds = -(-len(requests) // self.workers)
        try:
            for future in as_completed(futures, timeout=timeout * rounds):
                yield self._collect(future, futures[future])
        except TimeoutError:
            for future, request in futures.items():
                if not future.done():
                    future.cancel()
                    yield FitOutcome(request.key, request.model, None, timeout, f"timeout after {timeout:g}s")
            self.close(kill=True)  # a stuck worker would keep its slot forever: start a fresh pool next time

    def _collect(self, future: Future, request: FitRequest) -> FitOutcome:
        try:
            return future.result()
        except BrokenProcessPool as exc:
            self._executor = None
            return FitOutcome(request.key, request.model, None, 0.0, f"worker died: {exc}")
        except Exception as exc:  # an unexpected bug in one fit must not lose the batch
            log.exception("fit of %s crashed", request.key)
            return FitOutcome(request.key, request.model, None, 0.0, f"{type(exc).__name__}: {exc}")

    def close(self, kill: bool = False) -> None:
        """Shut the pool down and wait for its processes to exit (none may outlive the service).

        ``kill`` terminates busy workers first: after a fit timed out, and on SIGTERM, where waiting for the
        running fits would delay the stop."""
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        if kill:
            for process in list(getattr(executor, "_processes", {}).values()):
                if process.is_alive():
                    process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)
