"""The regression evidence of a score run (``regression.assess``), in worker processes when there is a lot of it.

``assess`` is the score job's heaviest step: a change-point split, a rank test and a Hodges-Lehmann interval per
series, about 0.6 ms each on these machines. It is a pure function of the series' residuals and its baseline's
reference residuals, so a run that needs it for many series (every series has a new sample: every 5th minute for
5-minute data, every minute for 1-minute data) hands it to a small process pool in batches, while the service
process goes on preparing the next batch; a run that needs it for few series does it inline. The results are the
same either way: the very same function runs.

A series seen for the first time also replays the ``persistence - 1`` evaluations before its latest sample
(``regression.warm_up``): their evidence is computed here too, and the verdict state is advanced in the service
process, in order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from analyzer.detection import regression
from analyzer.models.base import Reference
from analyzer.models.fitting import default_workers, worker_init

log = logging.getLogger(__name__)
MIN_POOLED = 400  # fewer series than this are assessed inline (a batch costs ~2 ms of pickling and waking a worker)
BATCH = 200


@dataclass
class AssessItem:
    """One series of a run: its read window's residuals and the rows to replay first (warm-up)."""

    timestamps: np.ndarray
    residuals: np.ndarray
    expected: np.ndarray
    reference: Reference | None
    settings: regression.RegressionSettings
    replay_rows: np.ndarray  # indices whose evaluations a first sight replays (empty afterwards)


@dataclass
class Assessed:
    replays: list[regression.Evidence]  # of ``replay_rows``, in order
    evidence: regression.Evidence  # of the whole window (the latest sample)


def assess_item(item: AssessItem) -> Assessed:
    times, residuals, expected = item.timestamps, item.residuals, item.expected
    replays = []
    for row in item.replay_rows:
        first = int(np.searchsorted(times, times[row] - item.settings.regression_window, side="right"))
        window = slice(first, int(row) + 1)
        replays.append(regression.assess(times[window], residuals[window], expected[window], item.reference,
                                         item.settings))  # fmt: skip
    return Assessed(replays, regression.assess(times, residuals, expected, item.reference, item.settings))


def assess_batch(items: Sequence[AssessItem]) -> list[Assessed]:
    return [assess_item(item) for item in items]


class AssessPool:
    """``workers`` processes (default: one per core) started on first use; ``workers=1`` always runs inline."""

    def __init__(self, workers: int = 0) -> None:
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None

    def start(self) -> AssessRun:
        return AssessRun(self)

    def submit(self, items: Sequence[AssessItem]) -> Future:
        if self._executor is None:
            context = multiprocessing.get_context("forkserver")  # fork is unsafe beside scheduler threads
            self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=worker_init,
                                                 initargs=(os.getpid(),))  # fmt: skip
        return self._executor.submit(assess_batch, items)

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


class AssessRun:
    """The items of one score run, in the order added. Once ``MIN_POOLED`` have come, they go to the pool in
    batches as they come (the service process prepares the next batch meanwhile); fewer run inline."""

    def __init__(self, pool: AssessPool) -> None:
        self.pool = pool
        self.items: list[AssessItem] = []
        self.submitted = 0  # items[:submitted] are in ``futures``
        self.futures: list[Future] = []

    def add(self, item: AssessItem) -> int:
        """Add an item; returns its index in ``results()``."""
        self.items.append(item)
        waiting = len(self.items) - self.submitted
        if self.pool.workers > 1 and len(self.items) >= MIN_POOLED and waiting >= BATCH:
            self._submit(len(self.items))
        return len(self.items) - 1

    def _submit(self, until: int) -> None:
        for start in range(self.submitted, until, BATCH):
            self.futures.append(self.pool.submit(self.items[start : min(start + BATCH, until)]))
        self.submitted = until

    def results(self) -> list[Assessed]:
        try:
            if self.futures:
                self._submit(len(self.items))
                return [assessed for future in self.futures for assessed in future.result()]
        except Exception as exc:  # a broken or closed pool must not lose the run: the same work, inline
            log.warning("assessing in worker processes failed (%s): inline this run", exc)
            self.pool.close()
        return assess_batch(self.items)
