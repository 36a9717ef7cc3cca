"""The baseline store's faults never stop the analysis: every read and write of the service goes through here.

A store that cannot be used (disk full, read-only file or directory, locked by another process longer than the busy
timeout, I/O error, a corrupt file that cannot be moved aside) is a fault of persistence only: the analysis goes on
in memory. What happens at a fault:

* it is counted (``Telemetry.store_error(operation)``) and logged once per operation and pass, not once per series;
* a failed write is kept in memory and retried at the next pass, only the latest per series and kind (so memory
  stays bounded by the number of series), or per target for the batched kinds (``touch``, ``records``);
* the store is left alone for the rest of the pass (a write deferred meanwhile is counted, not tried), so a store
  locked by another process costs one busy timeout per pass, not one per series;
* at the next pass (a new ``now`` in ``begin_pass``) the store is reopened (a connection SQLite opened read-only
  stays read-only) and the pending writes are replayed in the order the store needs (series rows first).

A read that fails returns the caller's default: the service starts without stored baselines, or keeps the pins and
actions it knew. An error that is not a fault of the store (a bug, a constraint) drops that write with an error log
instead of blocking every later write behind it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from analyzer.state.store import BUSY_TIMEOUT, BaselineStore, StoreError
from analyzer.telemetry import NullTelemetry, Telemetry

log = logging.getLogger(__name__)
T = TypeVar("T")
# the order pending writes are replayed in: series rows before what refers to them, decisions after the saves
WRITE_ORDER = ("touch", "save", "flags", "decision", "action", "records")
BATCH = "*"  # the series key of a batched pending write (one per target and kind)
Write = Callable[[BaselineStore], None]
BatchWrite = Callable[[BaselineStore, dict], None]


def is_store_fault(exc: BaseException) -> bool:
    """Whether ``exc`` says the store cannot be used now (retry later), rather than that one write is wrong."""
    if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)):
        return False
    return isinstance(exc, (sqlite3.Error, OSError, StoreError))


class GuardedStore:
    """A ``BaselineStore`` (or none yet, when it could not be opened) behind the fault handling above."""

    def __init__(
        self,
        opener: Callable[[], BaselineStore] | None,
        telemetry: Telemetry | None = None,
        store: BaselineStore | None = None,
        where: str = "",
    ) -> None:
        self._opener = opener
        self.telemetry = telemetry or NullTelemetry()
        self.store = store
        self.where = where or (str(store.path) if store is not None else "the baseline store")
        self.usable = store is not None
        self.pending: dict[tuple[str, str, str], tuple[Any, dict | None]] = {}
        self._pass: float | None = None
        self._logged: set[str] = set()
        self._lock = threading.RLock()  # one SQLite connection, used by the refit and the score threads

    @classmethod
    def open(cls, path: Path, telemetry: Telemetry | None = None, busy_timeout: float = BUSY_TIMEOUT) -> GuardedStore:
        """The service's store at ``path``; when it cannot be opened now the service starts in memory (counted
        as ``open``) and the store is tried again at each pass."""
        guarded = cls(lambda: BaselineStore.open_or_rebuild(path, busy_timeout), telemetry, where=str(path))
        guarded._reopen()
        return guarded

    # ------------------------------------------------------------ passes
    def begin_pass(self, now: float) -> None:
        """At the first call with a new ``now`` (each target's refit calls it; one pass shares one ``now``): the
        store is reopened if it failed, the pending writes are replayed, and the log may speak again."""
        with self._lock:
            if now == self._pass:
                return
            first, self._pass = self._pass is None, now
            if first:  # opening and loading at start belong to the first pass: not retried milliseconds later
                return
            self._logged.clear()
            if not self.usable:
                self._reopen()
            if self.usable and self.pending:
                self._replay()

    def flush(self) -> bool:
        """Try the pending writes now (e.g. before the service stops); True when nothing is left pending."""
        with self._lock:
            if not self.usable:
                self._reopen()
            if self.usable and self.pending:
                self._replay()
            return not self.pending

    def _reopen(self) -> None:
        if self._opener is None:
            self.usable = self.store is not None
            return
        if self.store is not None:
            self.store.close()
            self.store = None
        try:
            self.store = self._opener()
        except (StoreError, OSError, sqlite3.Error) as exc:
            self.usable = False
            self._failed("open", exc, "starting without stored baselines" if self._pass is None else "")
            return
        self.usable = True

    def _replay(self) -> None:
        count = len(self.pending)
        rank = {kind: index for index, kind in enumerate(WRITE_ORDER)}
        for entry in sorted(self.pending, key=lambda e: rank.get(e[0], len(rank))):
            operation, target, key = entry
            write, items = self.pending[entry]
            try:
                write(self.store) if items is None else write(self.store, items)
            except Exception as exc:  # noqa: BLE001 - a write that is wrong is dropped, not replayed forever
                self._rollback()
                if is_store_fault(exc):
                    self.usable = False
                    self._failed(operation, exc, f"{len(self.pending)} writes kept in memory")
                    return
                self.telemetry.store_error(operation)
                log.error("baseline store %s: pending %s of %s %s dropped: %s", self.where, operation, target, key, exc)
            del self.pending[entry]
        log.info("baseline store %s is usable again: %d pending writes saved", self.where, count)

    # ------------------------------------------------------------ reads and writes
    def read(self, operation: str, read: Callable[[BaselineStore], T], default: T) -> T:
        """``read(store)``, or ``default`` when the store is unusable (not counted: nothing is lost) or fails.
        Also for a write that needs no retry because every pass makes it again (pruning)."""
        with self._lock:
            if not self.usable:
                return default
            try:
                return read(self.store)
            except Exception as exc:  # noqa: BLE001 - sorted in _fault_or_raise
                self._fault_or_raise(operation, exc, "going on with what is in memory")
                return default

    def write(self, operation: str, target: str, key: str, write: Write) -> bool:
        """``write(store)`` now, or kept (replacing an earlier pending one of the same series and kind) and
        retried at the next pass. True when it landed."""
        return self._write(operation, target, key, write, None)

    def write_batch(self, operation: str, target: str, items: dict, write: BatchWrite) -> bool:
        """``write(store, items)``; kept as one pending write per target and kind whose items are merged, the
        later item of a key replacing the earlier one."""
        with self._lock:
            pending = self.pending.get((operation, target, BATCH))
            if pending is not None:
                items = {**pending[1], **items}
            return self._write(operation, target, BATCH, write, items)

    def _write(self, operation: str, target: str, key: str, write: Any, items: dict | None) -> bool:
        with self._lock:
            entry = (operation, target, key)
            if not self.usable:
                self.pending[entry] = (write, items)
                self.telemetry.store_error(operation)  # deferred: counted, not tried again in this pass
                return False
            self.pending.pop(entry, None)
            try:
                write(self.store) if items is None else write(self.store, items)
            except Exception as exc:  # noqa: BLE001 - sorted in _fault_or_raise
                if self._fault_or_raise(operation, exc, "kept in memory"):
                    self.pending[entry] = (write, items)
                return False
            return True

    # ------------------------------------------------------------ faults
    def _fault_or_raise(self, operation: str, exc: Exception, consequence: str) -> bool:
        """A fault of the store: counted, logged, the store left alone until the next pass (True). An SQLite
        error that only this operation has (a bug): counted and logged, the operation dropped (False). Anything
        else is not the store's and is raised."""
        self._rollback()
        if is_store_fault(exc):
            self.usable = False
            self._failed(operation, exc, consequence)
            return True
        if not isinstance(exc, sqlite3.Error):
            raise exc
        self.telemetry.store_error(operation)
        log.error("baseline store %s: %s failed and is dropped: %s", self.where, operation, exc)
        return False

    def _failed(self, operation: str, exc: BaseException, consequence: str) -> None:
        self.telemetry.store_error(operation)
        if operation in self._logged:
            return
        self._logged.add(operation)
        what = str(exc) if isinstance(exc, StoreError) else f"baseline store {self.where}: {operation} failed ({exc})"
        log.warning("%s: %s; the analysis goes on in memory and the store is retried at the next refit pass", what,
                    consequence or "writes kept in memory")  # fmt: skip

    def _rollback(self) -> None:
        """A failed write may leave a transaction open on the connection; close it so later writes can begin."""
        if self.store is None:
            return
        with contextlib.suppress(sqlite3.Error):
            if self.store.db.in_transaction:
                self.store.db.rollback()
