"""The read step of each pass: every target's history (``analyzer.service.history``) brought up to date from
Prometheus, only what is new read, and with several shards only this shard's part of the target
(``analyzer.service.partition``); with ``state_dir``, the histories are saved there and loaded at start.

A target's history is used by the refit and the score job, which run in threads of their own: each target has a
lock (``lock``), held while its history is read or copied from.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from analyzer.config import Config, TargetConfig
from analyzer.prometheus.reader import PrometheusReader, TooManySeries, identity_labels
from analyzer.series import Series, series_key
from analyzer.service.history import TargetHistory, load_history, save_history
from analyzer.service.partition import Partition, choose_partition
from analyzer.service.sharding import Shard
from analyzer.telemetry import Telemetry

log = logging.getLogger(__name__)
HISTORY_DIR = "history"  # under state_dir: each target's history (analyzer.service.history)
UNLISTED = Partition("", frozenset(), -1, -1)  # a target not listed yet (sharded runs)


def aligned_window(now: float, length: float, step: float) -> tuple[float, float]:
    """A [start, end] range on the step grid, so consecutive runs read the same sample timestamps."""
    end = np.floor(now / step) * step
    return end - np.ceil(length / step) * step, end


class Reading:
    def __init__(self, config: Config, reader: PrometheusReader, shard: Shard, telemetry: Telemetry) -> None:
        self.config = config
        self.reader = reader
        self.shard = shard
        self.telemetry = telemetry
        self.histories = {t.name: self._stored_history(t) for t in config.targets}
        self._saved: dict[str, float] = {}  # target -> when its history was last saved (state_dir)
        self._locks = {t.name: threading.Lock() for t in config.targets}
        self.partitions: dict[str, Partition | None] = {}  # per target, what this shard reads (None: everything)
        self.listed: dict[str, int] = {}  # per target, the series its last listing found (sharded runs)
        self.pushdown_off: set[str] = set()  # targets whose queries a label matcher would change

    def lock(self, target: TargetConfig) -> threading.Lock:
        return self._locks[target.name]

    def returned(self, target: TargetConfig, read: int) -> int:
        """The series the target's query returned: all of them, not only this shard's part."""
        return self.listed.get(target.name, read) if self.shard.count > 1 else read

    def _path(self, target: TargetConfig) -> Path | None:
        return Path(self.config.state_dir) / HISTORY_DIR / target.name if self.config.state_dir else None

    def _stored_history(self, target: TargetConfig) -> TargetHistory:
        """The target's history as saved at the last stop or refit interval (then only what came since is read),
        else an empty one (the first read takes the whole window)."""
        empty = TargetHistory(target.step, target.history, target.max_series)
        path = self._path(target)
        if path is None:
            return empty
        try:
            return load_history(path, target.step, target.history, target.max_series) or empty
        except (OSError, ValueError) as exc:
            self.telemetry.store_error("history")
            log.warning("target %s: saved history not used (%s): reading the whole window", target.name, exc)
            return empty

    def save(self, target: TargetConfig, now: float, force: bool = False) -> None:
        """Save the target's history once per refit interval (and at shutdown); a failure is counted and tried
        again at the next pass, the history in memory is unaffected."""
        path = self._path(target)
        every = self.config.schedule.refit_every
        if path is None or (not force and now - self._saved.get(target.name, -np.inf) < every):
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self.lock(target):
                save_history(self.histories[target.name], path)
        except OSError as exc:
            self.telemetry.store_error("history")
            log.warning("target %s: history not saved (%s): tried again at the next pass", target.name, exc)
            return
        self._saved[target.name] = now

    def read(self, target: TargetConfig, now: float, discover: bool = False) -> TargetHistory:
        """The target's history brought up to ``now``; only what it does not hold yet is read
        (analyzer.service.history). A shard of several reads only its partition of the target
        (analyzer.service.partition), listed again when ``discover``. Call with the target's lock held."""
        _, end = aligned_window(now, target.history, target.step)
        listing = None
        if self.shard.count > 1 and (discover or target.name not in self.partitions):
            listing = self._partition(target, end)
        partition = self.partitions.get(target.name)
        history = self.histories[target.name]
        plan = history.plan(end)
        held = history.end_slot
        history.begin(plan)
        if partition is not None and partition.empty:
            return history  # this shard owns no series of the target
        try:
            self._read_range(target, partition, plan.start, plan.end, history)
        except TooManySeries:
            self.histories[target.name] = TargetHistory(target.step, target.history, target.max_series)
            raise
        except BaseException:
            history.end_slot = None if plan.full else held  # the cleared slots are read again next time
            raise
        if listing is not None and partition is not None and not self._pushdown_agrees(history, *listing, end):
            log.warning("target %s: a label matcher changes what the query returns (a join or an aggregation over "
                        "all series?): this shard reads the whole target", target.name)  # fmt: skip
            self.pushdown_off.add(target.name)
            self.partitions[target.name] = None
            self.histories[target.name] = TargetHistory(target.step, target.history, target.max_series)
            return self.read(target, now)
        return history

    def _read_range(self, target: TargetConfig, partition: Partition | None, start: float, end: float,
                    history: TargetHistory) -> None:  # fmt: skip
        query = target.query if partition is None else partition.query(target.query)
        self.reader.read_matrix(query, start, end, target.step, history.add, max_series=target.max_series,
                                expected_series=len(history.labels) or None)  # fmt: skip

    def _partition(self, target: TargetConfig, end: float) -> tuple[list, list[str], list[bool]]:
        """List the target's series with one instant query at the grid's end and choose the label matcher this
        shard reads with; returns the listing ((labels, value) per series, their keys, which are owned). A
        pushed-down matcher must not change what the query returns for the owned series: ``read`` compares
        their values at ``end`` with the listing after each read that follows one, and any difference (a
        matcher that also filters the other side of a join or an aggregation) makes the shard read everything."""
        found = self.reader.query(target.query, end)
        history = self.histories[target.name]
        names = {labels["__name__"] for labels, _ in found if "__name__" in labels}
        history.names |= names
        keep_name = len(history.names) > 1
        keys = [series_key(identity_labels(labels, keep_name)) for labels, _ in found]
        owned = [self.shard.owns(target.name, key) for key in keys]
        self.listed[target.name] = len(found)
        previous = self.partitions.get(target.name, UNLISTED)
        chosen = None if target.name in self.pushdown_off else choose_partition([lab for lab, _ in found], owned)
        self.partitions[target.name] = chosen
        if previous is not UNLISTED:
            same_label = previous is not None and chosen is not None and previous.label == chosen.label
            if not same_label and previous != chosen:
                self.histories[target.name] = TargetHistory(target.step, target.history, target.max_series)
                self.histories[target.name].names |= history.names
            elif same_label and history.end_slot is not None and chosen.values - previous.values:
                added = Partition(chosen.label, chosen.values - previous.values, 0, 0)
                self._read_range(target, added, history.start, history.end, history)  # the history of new series
        return found, keys, owned

    @staticmethod
    def _pushdown_agrees(history: TargetHistory, found: list, keys: list[str], owned: list[bool], end: float
                         ) -> bool:  # fmt: skip
        """Whether the owned series hold, at ``end``, the values the unfiltered instant query returned."""
        if history.end_slot is None or history.end < end:
            return True
        rows = {key: row for row, _, key in history.rows()}
        for (_, value), key, own in zip(found, keys, owned, strict=True):
            if not own:
                continue
            row = rows.get(key)
            held = history.values(row, end)[-1] if row is not None else np.nan
            if np.isnan(held) or not np.isclose(held, value, rtol=1e-6, atol=0.0, equal_nan=True):
                return False
        return True

    def recent(self, target: TargetConfig, now: float, since: float) -> list[Series]:
        """The owned series with a sample since ``since``, read up to ``now``."""
        with self.lock(target):
            history = self.read(target, now)
            timestamps, values = history.window(since)
            observed = ~np.isnan(values).all(axis=1)
            recent = []
            for row, labels, key in history.rows():
                if observed[row] and self.shard.owns(target.name, key):
                    recent.append(Series(labels, timestamps, values[row]))
        return recent
