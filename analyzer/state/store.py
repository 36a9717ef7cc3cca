"""The baseline store: one SQLite file (``<state_dir>/baselines.sqlite``) shared by the service and the CLI.

What it keeps per series (``target`` + series key): every adopted baseline version with its model, parameters,
fitted state, training window, data fingerprint, fit quality, creation time and reason; the flagged periods that
are masked out of training until accepted; a pending action from the CLI (accept, reset) and a pinned version;
the record of the statistics the series exported (``analyzer.detection.budget.ScoreRecord``, zlib-compressed
JSON), which
its alert thresholds are calibrated from, so a restart does not start the calibration over.

Serialisation of a fitted baseline: JSON (zlib-compressed) of its dataclass fields, numpy arrays as base64
little-endian float64/int64, plus the class name. Not pickle, because a pickle is tied to module paths and
class layouts (a refactor would orphan every stored baseline), executes code when loaded (the file lives on a
shared volume), and cannot be read by ``perfsentinel baseline show``. ``FORMAT_VERSION`` is checked on open:
a file written by a newer format is refused with a clear error, and a row that no longer decodes is skipped (the
series is refitted) rather than crashing the service.

Concurrency: WAL journal and a 10 s busy timeout, so the CLI can write while the service reads.

Faults: opening raises ``StoreCorrupt`` for a file that is not a store of this format (the service moves it aside)
and ``StoreUnavailable`` for a store that is fine but cannot be used now (disk full, read-only, locked, I/O error);
``analyzer.state.guarded`` keeps the service running in memory through the second kind.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import logging
import sqlite3
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analyzer.models.base import FittedBaseline, Seasonality

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
STORE_FILE = "baselines.sqlite"
KEEP_VERSIONS = 5  # older unpinned versions are deleted
SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT = 10.0  # seconds a write waits for another process' lock before it fails

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS series (
  target TEXT NOT NULL, key TEXT NOT NULL, labels TEXT NOT NULL, last_seen REAL NOT NULL,
  pinned_version INTEGER, pending_action TEXT, pending_note TEXT NOT NULL DEFAULT '', pending_at REAL,
  decision TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (target, key));
CREATE TABLE IF NOT EXISTS baselines (
  target TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, model TEXT NOT NULL, params TEXT NOT NULL,
  state BLOB NOT NULL, trained_from REAL NOT NULL, trained_to REAL NOT NULL, fingerprint TEXT NOT NULL,
  quality TEXT NOT NULL, created_at REAL NOT NULL, reason TEXT NOT NULL, note TEXT NOT NULL DEFAULT '',
  active INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (target, key, version));
CREATE TABLE IF NOT EXISTS flags (
  target TEXT NOT NULL, key TEXT NOT NULL, start REAL NOT NULL, end REAL NOT NULL, kind TEXT NOT NULL,
  accepted_at REAL, note TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS flags_series ON flags (target, key);
CREATE TABLE IF NOT EXISTS records (
  target TEXT NOT NULL, key TEXT NOT NULL, record BLOB NOT NULL, saved_at REAL NOT NULL,
  PRIMARY KEY (target, key));
"""


class StoreError(RuntimeError):
    """The store file cannot be used (not SQLite, corrupt, written by a newer format, unwritable)."""


class StoreCorrupt(StoreError):
    """The file is not a baseline store this version can read (not SQLite, corrupt, a newer format)."""


class StoreUnavailable(StoreError):
    """The store cannot be used now (disk full, read-only, locked, I/O error); the file itself may be fine."""


CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}


def is_corruption(exc: sqlite3.Error) -> bool:
    """Whether SQLite says the file itself is bad, as opposed to the disk, a lock or permissions."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in CORRUPT_CODES


# ---------------------------------------------------------------- serialisation
def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value, dtype="<i8" if value.dtype.kind in "iub" else "<f8")
        return {"__array__": base64.b64encode(array.tobytes()).decode(), "dtype": array.dtype.str,
                "shape": list(array.shape)}  # fmt: skip
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        fields = {name: _encode(getattr(value, name)) for name in names}
        # attributes set after construction (FittedBaseline.reference) are kept beside the fields
        extras = {k: _encode(v) for k, v in vars(value).items() if k not in names and v is not None}
        return {"__class__": type(value).__name__, "fields": fields, **({"extras": extras} if extras else {})}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _classes() -> dict[str, type]:
    from analyzer.detection.budget import Thresholds
    from analyzer.detection.calibration import Calibration
    from analyzer.detection.novelty import NoveltyReference
    from analyzer.models.base import Reference
    from analyzer.models.profile import FittedProfile
    from analyzer.models.prophet import FittedProphet
    from analyzer.models.shifted import ShiftedBaseline
    from analyzer.models.stl import FittedSTL

    return {
        c.__name__: c
        for c in (
            FittedSTL,
            FittedProfile,
            FittedProphet,
            ShiftedBaseline,
            Seasonality,
            Reference,
            Thresholds,
            Calibration,
            NoveltyReference,
        )
    }


def _decode(value: Any, classes: dict[str, type]) -> Any:
    if isinstance(value, list):
        return [_decode(v, classes) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        raw = base64.b64decode(value["__array__"])
        return np.frombuffer(raw, dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
    if "__tuple__" in value:
        return tuple(_decode(v, classes) for v in value["__tuple__"])
    if "__class__" in value:
        cls = classes[value["__class__"]]
        instance = cls(**{k: _decode(v, classes) for k, v in value["fields"].items()})
        for name, extra in value.get("extras", {}).items():
            setattr(instance, name, _decode(extra, classes))
        return instance
    return {k: _decode(v, classes) for k, v in value.items()}


def dump_baseline(baseline: FittedBaseline) -> bytes:
    return zlib.compress(json.dumps(_encode(baseline), separators=(",", ":")).encode(), 6)


def load_baseline(blob: bytes) -> FittedBaseline:
    return _decode(json.loads(zlib.decompress(blob)), _classes())


def fingerprint(timestamps: np.ndarray, values: np.ndarray) -> str:
    """16 hex digits of SHA-256 over the training grid and values (NaN where missing or masked)."""
    digest = hashlib.sha256(np.ascontiguousarray(timestamps, "<f8").tobytes())
    digest.update(np.ascontiguousarray(values, "<f8").tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- records
@dataclass
class StoredBaseline:
    target: str
    key: str
    version: int
    model: str
    params: dict
    trained_from: float
    trained_to: float
    fingerprint: str
    quality: dict
    created_at: float
    reason: str
    note: str
    active: bool
    baseline: FittedBaseline | None = None  # None when listed without state or when it no longer decodes


@dataclass
class SeriesRecord:
    target: str
    key: str
    labels: dict[str, str]
    last_seen: float
    pinned_version: int | None
    pending_action: str | None
    pending_note: str
    pending_at: float | None
    decision: str


@dataclass
class Flag:
    start: float
    end: float
    kind: str  # anomaly | regression
    accepted_at: float | None = None
    note: str = ""


# ---------------------------------------------------------------- the store
class BaselineStore:
    def __init__(self, path: str | Path, create: bool = True, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"no baseline store at {self.path} (the service creates it on its first start)")
        self.db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._check_header()
            self.db = sqlite3.connect(self.path, timeout=busy_timeout, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
            self._check_format()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            kind = StoreCorrupt if is_corruption(exc) else StoreUnavailable
            raise kind(f"baseline store {self.path} is unusable: {exc}") from None
        except OSError as exc:
            self._close_quietly()
            raise StoreUnavailable(f"baseline store {self.path} cannot be opened: {exc}") from None
        except StoreError:
            self._close_quietly()
            raise

    def _check_header(self) -> None:
        """Refuse a file that is not SQLite before SQLite opens it: closing a connection to such a file deletes
        the ``-wal`` and ``-shm`` files beside it, which are the user's until the file is moved aside."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb") as file:
            if file.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise StoreCorrupt(f"baseline store {self.path} is unusable: file is not a database")

    def _close_quietly(self) -> None:
        if self.db is not None:
            with contextlib.suppress(sqlite3.Error):
                self.db.close()

    @classmethod
    def in_dir(cls, state_dir: str | Path, create: bool = True) -> BaselineStore:
        return cls(Path(state_dir) / STORE_FILE, create)

    @classmethod
    def open_or_rebuild(cls, path: str | Path, busy_timeout: float = BUSY_TIMEOUT) -> BaselineStore:
        """For the service: a corrupt or foreign file is moved aside (``<file>.corrupt-<unix time>``, with its
        ``-wal`` and ``-shm`` files beside it) and a fresh store is created, so a bad file costs one refit of
        everything instead of a crash loop. Nothing is deleted. A store that cannot be opened for another reason
        (disk full, read-only, locked), or a bad file that cannot be moved aside, raises ``StoreUnavailable``."""
        path = Path(path)
        try:
            return cls(path, busy_timeout=busy_timeout)
        except StoreCorrupt as exc:
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            try:
                path.rename(aside)
                for suffix in ("-wal", "-shm"):
                    companion = Path(f"{path}{suffix}")
                    if companion.exists():
                        companion.rename(f"{aside}{suffix}")
            except OSError as move:
                raise StoreUnavailable(f"{exc}; it cannot be moved aside ({move})") from None
            log.error("%s; moved it to %s and starting with an empty store", exc, aside)
            return cls(path, busy_timeout=busy_timeout)

    def _check_format(self) -> None:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT_VERSION),))
        elif int(row[0]) > FORMAT_VERSION:
            raise StoreCorrupt(f"baseline store {self.path} has format {row[0]}, this version reads {FORMAT_VERSION}")

    def close(self) -> None:
        self._close_quietly()

    # ------------------------------------------------------------ series
    def touch_series(self, target: str, key: str, labels: dict[str, str], seen_at: float) -> None:
        self.db.execute(
            "INSERT INTO series (target, key, labels, last_seen) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (target, key) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)",
            (target, key, json.dumps(labels, sort_keys=True), seen_at),
        )

    def touch_many(self, target: str, seen: dict[str, tuple[dict[str, str], float]]) -> None:
        """``touch_series`` for each key -> (labels, seen_at), in one transaction."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            for key, (labels, seen_at) in seen.items():
                self.touch_series(target, key, labels, seen_at)

    def series(self, target: str | None = None) -> list[SeriesRecord]:
        sql = "SELECT * FROM series" + (" WHERE target = ?" if target else "") + " ORDER BY target, key"
        rows = self.db.execute(sql, (target,) if target else ()).fetchall()
        return [SeriesRecord(r[0], r[1], json.loads(r[2]), *r[3:]) for r in rows]

    def series_record(self, target: str, key: str) -> SeriesRecord | None:
        found = [s for s in self.series(target) if s.key == key]
        return found[0] if found else None

    def set_decision(self, target: str, key: str, decision: str) -> None:
        self.db.execute("UPDATE series SET decision = ? WHERE target = ? AND key = ?", (decision, target, key))

    def prune(self, target: str, older_than: float) -> list[str]:
        """Delete series of ``target`` last seen before ``older_than``, with their baselines and flags."""
        keys = [r[0] for r in self.db.execute(
            "SELECT key FROM series WHERE target = ? AND last_seen < ?", (target, older_than))]  # fmt: skip
        for key in keys:
            self._delete_series(target, key, keep_series=False)
        return keys

    def _delete_series(self, target: str, key: str, keep_series: bool) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM baselines WHERE target = ? AND key = ?", (target, key))
            self.db.execute("DELETE FROM flags WHERE target = ? AND key = ?", (target, key))
            self.db.execute("DELETE FROM records WHERE target = ? AND key = ?", (target, key))
            if keep_series:
                self.db.execute("UPDATE series SET pinned_version = NULL, pending_action = NULL, pending_note = '', "
                                "pending_at = NULL WHERE target = ? AND key = ?", (target, key))  # fmt: skip
            else:
                self.db.execute("DELETE FROM series WHERE target = ? AND key = ?", (target, key))

    # ------------------------------------------------------------ baselines
    def save(
        self, target: str, key: str, baseline: FittedBaseline, *, fingerprint: str, quality: dict, reason: str,
        created_at: float, params: dict | None = None, note: str = "", state: bytes | None = None,
    ) -> int:  # fmt: skip
        """Store ``baseline`` as the next version of the series and make it the active one; returns the version.
        ``state`` is ``dump_baseline(baseline)`` when the caller has it already (a fit worker serialised it)."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute(
                "SELECT coalesce(max(version), 0) FROM baselines WHERE target = ? AND key = ?", (target, key)
            ).fetchone()
            version = int(row[0]) + 1
            self.db.execute("UPDATE baselines SET active = 0 WHERE target = ? AND key = ?", (target, key))
            self.db.execute(
                "INSERT INTO baselines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                (target, key, version, baseline.model, json.dumps(params or {}), state or dump_baseline(baseline),
                 baseline.trained_from, baseline.trained_to, fingerprint, json.dumps(quality), created_at, reason,
                 note),
            )  # fmt: skip
            self.db.execute(
                "DELETE FROM baselines WHERE target = ? AND key = ? AND version <= ? AND active = 0 AND version "
                "IS NOT (SELECT pinned_version FROM series WHERE target = ? AND key = ?)",
                (target, key, version - KEEP_VERSIONS, target, key),
            )
        return version

    def activate(self, target: str, key: str, version: int) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE baselines SET active = (version = ?) WHERE target = ? AND key = ?",
                            (version, target, key))  # fmt: skip

    def versions(self, target: str, key: str, with_state: bool = False) -> list[StoredBaseline]:
        return list(self._select("target = ? AND key = ?", (target, key), with_state))

    def active(self, target: str, with_state: bool = True) -> list[StoredBaseline]:
        return list(self._select("target = ? AND active = 1", (target,), with_state))

    def get(self, target: str, key: str, version: int) -> StoredBaseline | None:
        found = list(self._select("target = ? AND key = ? AND version = ?", (target, key, version), True))
        return found[0] if found else None

    def _select(self, where: str, args: tuple, with_state: bool) -> Iterator[StoredBaseline]:
        columns = "target, key, version, model, params, trained_from, trained_to, fingerprint, quality, " \
                  "created_at, reason, note, active" + (", state" if with_state else "")  # fmt: skip
        sql = f"SELECT {columns} FROM baselines WHERE {where} ORDER BY target, key, version"
        for row in self.db.execute(sql, args).fetchall():
            record = StoredBaseline(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7],
                                    json.loads(row[8]), row[9], row[10], row[11], bool(row[12]))  # fmt: skip
            if with_state:
                try:
                    record.baseline = load_baseline(row[13])
                except Exception as exc:  # a row that no longer decodes: refit that series, keep the rest
                    log.warning("stored baseline %s %s v%d does not decode (%s): it will be refitted",
                                row[0], row[1], row[2], exc)  # fmt: skip
            yield record

    # ------------------------------------------------------------ flags
    def flags(self, target: str, key: str) -> list[Flag]:
        rows = self.db.execute("SELECT start, end, kind, accepted_at, note FROM flags WHERE target = ? AND key = ? "
                               "ORDER BY start", (target, key)).fetchall()  # fmt: skip
        return [Flag(*row) for row in rows]

    def replace_flags(self, target: str, key: str, flags: list[Flag]) -> None:
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("DELETE FROM flags WHERE target = ? AND key = ?", (target, key))
            rows = [(target, key, f.start, f.end, f.kind, f.accepted_at, f.note) for f in flags]
            self.db.executemany("INSERT INTO flags VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    # ------------------------------------------------------------ score records
    def save_records(self, target: str, records: dict[str, str], saved_at: float) -> None:
        """Keep each series' record (``ScoreRecord.to_json``), replacing the one stored before."""
        rows = [(target, key, zlib.compress(text.encode(), 6), saved_at) for key, text in records.items()]
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", rows)

    def records(self, target: str) -> dict[str, str]:
        """The stored records of ``target``'s series, as JSON text (a row that does not decompress is left out)."""
        found = {}
        for key, blob in self.db.execute("SELECT key, record FROM records WHERE target = ?", (target,)):
            try:
                found[key] = zlib.decompress(blob).decode()
            except (zlib.error, UnicodeDecodeError) as exc:
                log.warning("stored score record of %s %s is unreadable (%s): it starts over", target, key, exc)
        return found

    # ------------------------------------------------------------ actions from the CLI
    def request(self, target: str, key: str, action: str, note: str, at: float) -> None:
        """Queue ``accept`` or ``reset`` for the service's next refit of the series."""
        if self.series_record(target, key) is None:
            raise StoreError(f"no series {key} in target {target!r}")
        self.db.execute("UPDATE series SET pending_action = ?, pending_note = ?, pending_at = ? "
                        "WHERE target = ? AND key = ?", (action, note, at, target, key))  # fmt: skip

    def clear_action(self, target: str, key: str) -> None:
        self.db.execute("UPDATE series SET pending_action = NULL, pending_note = '', pending_at = NULL "
                        "WHERE target = ? AND key = ?", (target, key))  # fmt: skip

    def pin(self, target: str, key: str, version: int | None) -> None:
        """Freeze the series on ``version`` (it becomes active); None releases the pin."""
        if version is not None:
            if self.get(target, key, version) is None:
                raise StoreError(f"{target} {key} has no stored version {version}")
            self.activate(target, key, version)
        self.db.execute("UPDATE series SET pinned_version = ? WHERE target = ? AND key = ?", (version, target, key))

    def reset(self, target: str, key: str) -> None:
        """Forget every version and flag of the series; the service refits it from scratch."""
        self._delete_series(target, key, keep_series=True)
        self.request(target, key, "reset", "", time.time())
