"""The recent history of one target's series, kept between passes so that each pass reads only what is new.

Every series of a target sits on the target's step grid over its ``history`` window, in a ring of ``slots``
columns (the column of absolute slot ``s`` = time / step is ``s % slots``), stored in blocks of rows so that a new
series never copies the others. The first read of a target fills the whole window; later reads ask Prometheus
only for the slots after the newest one held, plus ``OVERLAP_STEPS`` already held (late samples, a point that was
being written), and clear what falls out of the window. After a gap longer than the window (an outage, a stopped
service), the whole window is read again.

Where ``state_dir`` is set, each target's history is saved there (``history/<target>``) once per refit interval
and at shutdown, and loaded at start: a restart reads only what came since, not 28 days of every series.

The values are ``float32`` (half the memory of the float64 answers: 32 MB per 1,000 series at 28 days x 5 minutes;
7 significant digits, far finer than any noise a baseline models) and are handed out as float64 copies.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analyzer.prometheus.reader import SeriesCollision, TooManySeries, identity_labels
from analyzer.series import series_key

OVERLAP_STEPS = 2  # slots already held that each incremental read asks for again
BLOCK_ROWS = 256
DTYPE = np.float32


@dataclass(frozen=True)
class ReadPlan:
    """The grid range one read asks for, and whether it replaces the whole window."""

    start: float
    end: float
    full: bool


class TargetHistory:
    def __init__(self, step: float, length: float, max_series: int) -> None:
        self.step = step
        self.max_series = max_series
        self.slots = int(math.ceil(length / step - 1e-9)) + 1
        self.end_slot: int | None = None  # absolute slot of the newest grid point held
        self.keys: dict[str, int] = {}  # raw series key (with __name__) -> row
        self.labels: list[dict[str, str]] = []  # raw labels per row
        self.blocks: list[np.ndarray] = []
        self.names: set[str] = set()  # metric names the target's answers carried

    # ------------------------------------------------------------ reading
    def plan(self, end: float) -> ReadPlan:
        """What to read so that the window ends at ``end`` (a multiple of the step)."""
        new_end = self._slot(end)
        if self.end_slot is None or not 0 <= new_end - self.end_slot < self.slots - OVERLAP_STEPS:
            return ReadPlan((new_end - self.slots + 1) * self.step, end, True)
        first = max(self.end_slot - OVERLAP_STEPS, new_end - self.slots + 1)
        return ReadPlan(first * self.step, end, False)

    def begin(self, plan: ReadPlan) -> None:
        """Make room for a read: the window moves to the plan's end, and the slots it reads are cleared (so that
        what Prometheus no longer returns there is missing, not an old value)."""
        first, last = self._slot(plan.start), self._slot(plan.end)
        if plan.full or self.end_slot is None:
            for block in self.blocks:
                block.fill(np.nan)
        else:
            columns = np.arange(first, last + 1) % self.slots
            for block in self.blocks:
                block[:, columns] = np.nan
        self.end_slot = last

    def add(self, labels: dict[str, str], times: np.ndarray, values: np.ndarray) -> None:
        """A sink for ``PrometheusReader.read_matrix``: the samples of one series of one answer."""
        key = series_key(labels)
        row = self.keys.get(key)
        if row is None:
            row = self._new_row(key, labels)
        slots = np.rint(times / self.step).astype(np.int64)
        inside = (slots <= self.end_slot) & (slots > self.end_slot - self.slots)
        block, offset = divmod(row, BLOCK_ROWS)
        self.blocks[block][offset, slots[inside] % self.slots] = values[inside]

    def _new_row(self, key: str, labels: dict[str, str]) -> int:
        """Room for one more series; beyond ``max_series`` the read fails before any memory is taken for it."""
        row = len(self.labels)
        if row >= self.max_series:
            raise TooManySeries(row + 1, self.max_series)
        if row == len(self.blocks) * BLOCK_ROWS:
            self.blocks.append(np.full((BLOCK_ROWS, self.slots), np.nan, dtype=DTYPE))
        self.keys[key] = row
        self.labels.append(labels)
        if "__name__" in labels:
            self.names.add(labels["__name__"])
        return row

    def _slot(self, time: float) -> int:
        return int(round(time / self.step))

    # ------------------------------------------------------------ handing out
    @property
    def end(self) -> float:
        return (self.end_slot or 0) * self.step

    @property
    def start(self) -> float:
        return ((self.end_slot or 0) - self.slots + 1) * self.step

    def timestamps(self, since: float | None = None) -> np.ndarray:
        """The grid from ``since`` (default: the window's start) to its end."""
        first = self.start if since is None else max(self.start, math.ceil(since / self.step - 1e-9) * self.step)
        count = int(round((self.end - first) / self.step)) + 1
        return first + self.step * np.arange(max(count, 0), dtype=np.float64)

    def _columns(self, times: np.ndarray) -> np.ndarray:
        return np.rint(times / self.step).astype(np.int64) % self.slots

    def values(self, row: int, since: float | None = None) -> np.ndarray:
        """A float64 copy of one series on ``timestamps(since)``."""
        block, offset = divmod(row, BLOCK_ROWS)
        return self.blocks[block][offset, self._columns(self.timestamps(since))].astype(np.float64)

    def window(self, since: float) -> tuple[np.ndarray, np.ndarray]:
        """``timestamps(since)`` and every series' values there (rows x times, float64): what a score run reads,
        taken with one index per block of rows."""
        times = self.timestamps(since)
        columns = self._columns(times)
        values = [block[:, columns] for block in self.blocks]
        matrix = np.concatenate(values)[: len(self.labels)] if values else np.zeros((0, times.size))
        return times, matrix.astype(np.float64)

    def rows(self) -> list[tuple[int, dict[str, str], str]]:
        """(row, exported labels, series key) of every series held; several metric names keep the name as a label.
        Raises SeriesCollision when two series would be exported alike (never merged silently)."""
        keep_name = len(self.names) > 1
        found, owners = [], {}
        for row, raw in enumerate(self.labels):
            labels = identity_labels(raw, keep_name)
            key = series_key(labels)
            if key in owners:
                raise SeriesCollision(f"two series of the query would both be exported as {key}: "
                                      f"{series_key(self.labels[owners[key]])} and {series_key(raw)}; keep a label "
                                      "that tells them apart (e.g. by (...) in the query)")  # fmt: skip
            owners[key] = row
            found.append((row, labels, key))
        return found

    def observed_since(self, since: float) -> np.ndarray:
        """Per row, whether it has a sample (finite or infinite) at or after ``since``."""
        columns = self._columns(self.timestamps(since))
        found = [~np.isnan(block[:, columns]).all(axis=1) for block in self.blocks]
        return np.concatenate(found)[: len(self.labels)] if found else np.zeros(0, dtype=bool)

    def forget_empty(self) -> int:
        """Drop the series without any sample in the window (gone for longer than the history); returns how many."""
        keep = self.observed_since(self.start)
        if keep.all():
            return 0
        survivors = [(labels, self._row_values(row)) for row, labels in enumerate(self.labels) if keep[row]]
        self.keys, self.labels, self.blocks, self.names = {}, [], [], set()
        for labels, values in survivors:
            row = self._new_row(series_key(labels), labels)
            block, offset = divmod(row, BLOCK_ROWS)
            self.blocks[block][offset] = values
        return int((~keep).sum())

    def _row_values(self, row: int) -> np.ndarray:
        block, offset = divmod(row, BLOCK_ROWS)
        return self.blocks[block][offset].copy()

    @property
    def nbytes(self) -> int:
        return sum(block.nbytes for block in self.blocks)


# ---------------------------------------------------------------- on disk
MAGIC = b"PSHIST1\n"


def save_history(history: TargetHistory, path: Path) -> None:
    """Write ``history`` to ``path`` (atomically: a temporary file renamed over it). The layout is a small JSON
    header (step, window, newest slot, labels) and then the float32 rows, one block after another, so saving
    takes no second copy of the values. Raises OSError (a full disk, a read-only volume)."""
    header = json.dumps({"step": history.step, "slots": history.slots, "end_slot": history.end_slot,
                         "labels": history.labels, "names": sorted(history.names)}).encode()  # fmt: skip
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(MAGIC + len(header).to_bytes(8, "little") + header)
            for index, block in enumerate(history.blocks):
                used = min(BLOCK_ROWS, len(history.labels) - index * BLOCK_ROWS)
                handle.write(np.ascontiguousarray(block[:used], dtype="<f4").tobytes())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def load_history(path: Path, step: float, length: float, max_series: int) -> TargetHistory | None:
    """The history saved at ``path`` when it fits the target's step and window (None when there is none or the
    configuration changed). Raises OSError or ValueError for a file that cannot be read."""
    if not path.exists():
        return None
    history = TargetHistory(step, length, max_series)
    with open(path, "rb") as handle:
        if handle.read(len(MAGIC)) != MAGIC:
            raise ValueError(f"{path} is not a Perf Sentinel history file")
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        if header["step"] != step or header["slots"] != history.slots or len(header["labels"]) > max_series:
            return None
        values = np.fromfile(handle, dtype="<f4")
    if values.size != len(header["labels"]) * history.slots:
        raise ValueError(f"{path} is truncated")
    values = values.reshape(len(header["labels"]), history.slots)
    for labels, row in zip(header["labels"], values, strict=True):
        index = history._new_row(series_key(labels), labels)
        block, offset = divmod(index, BLOCK_ROWS)
        history.blocks[block][offset] = row
    history.names = set(header["names"])
    history.end_slot = header["end_slot"]
    return history
