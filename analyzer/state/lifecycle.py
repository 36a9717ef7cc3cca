"""The baseline lifecycle: which fit becomes a series' baseline, and which data the next fit may learn from.

Masking (every strategy): before a series is refitted, the samples since the last check are scored against its
current baseline; runs of samples above the band (anomaly score > 1, direction-aware), closed over gaps shorter
than ``MERGE_GAP`` so a regression hovering at the band edge is one period, become *flags*. Regressed periods
reported by the regression verdicts (``severity > 0`` from ``regression_start``) are flagged too. Flagged samples
are NaN in the training data of every later refit until someone accepts them (``perfsentinel baseline accept``),
so a sustained regression keeps alerting until a person accepts it or it recovers; an improvement is not flagged
(it is not in the bad direction) and can be learned.

Update strategies (per target ``update_strategy``) decide whether a successful refit replaces the baseline:

* ``manual``: never, until accepted (the first fit of a new series is always adopted).
* ``time_based``: when the baseline is older than ``update_every`` and the series is stable (no open flag).
* ``on_improvement``: when most recent samples (``RECENT_SECONDS``) lie beyond the band on the *good* side
  and the new fit explains them better; the new baseline is shifted to the current level.
* ``on_drift``: routine replacement only while there is no drift in either direction; once most recent samples
  are outside the band it waits for a review (accept).
* ``adaptive``: when the verdict is confidently none (no flagged sample in the recent window, no open flag)
  and the new fit's error on the recent unmasked samples is not worse than the current baseline's.

Whatever the strategy: ``accept`` unmasks the flagged periods and adopts the next fit shifted to the current level
(median residual of the recent samples); ``pin`` freezes a version; ``reset`` forgets the series and refits it.
CLI actions are queued in the store and applied at the service's next refit pass of the series.

Persistence goes through ``analyzer.state.guarded``: a store that cannot be read or written never stops a refit
(the new baseline is adopted and scored from in memory; the write is retried at the next pass).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from analyzer.config import STRATEGIES, ConfigError
from analyzer.detection.budget import ScoreRecord
from analyzer.detection.reference import attach_reference
from analyzer.detection.scoring import anomaly_scores, gated_band
from analyzer.models.base import FittedBaseline, Reference, robust_scale
from analyzer.models.shifted import ShiftedBaseline
from analyzer.series import Series
from analyzer.state.guarded import GuardedStore
from analyzer.state.store import BUSY_TIMEOUT, STORE_FILE, BaselineStore, Flag, fingerprint
from analyzer.telemetry import Telemetry

log = logging.getLogger(__name__)
REFIT_SLICES = 4  # the refit pass runs this many times per refit interval; each series is refitted once
MERGE_GAP = 3600.0
RECENT_SECONDS = 6 * 3600.0
MOST = 0.5  # share of recent samples that makes "most"
MIN_RECENT = 6


@dataclass
class BaselineMeta:
    version: int
    created_at: float
    reason: str


@dataclass
class Decision:
    adopt: bool
    reason: str
    shift: bool = False


@dataclass
class Evidence:
    """What the strategies look at, computed from the recent samples of a series."""

    open_flag: bool = False
    recent_flagged: bool = False
    improved: bool = False
    drifted: bool = False
    current_error: float = float("nan")
    candidate_error: float = float("nan")
    age: float = 0.0

    @property
    def better(self) -> bool:
        return np.isfinite(self.candidate_error) and not self.candidate_error > self.current_error


def decide(strategy: str, evidence: Evidence, update_every: float, action: str | None, pinned: bool) -> Decision:
    """Whether a successful refit replaces an existing baseline. Pure, so every rule is unit-tested."""
    if action == "reset":
        return Decision(True, "reset")
    if pinned:
        return Decision(False, "pinned")
    if action == "accept":
        return Decision(True, "accepted", shift=True)
    if strategy == "manual":
        return Decision(False, "manual: waiting for accept")
    if strategy == "time_based":
        if evidence.age < update_every:
            return Decision(False, "time_based: not due")
        return Decision(not evidence.open_flag, "scheduled" if not evidence.open_flag else "time_based: unstable")
    if strategy == "on_improvement":
        if evidence.improved and evidence.better:
            return Decision(True, "improvement", shift=True)
        return Decision(False, "on_improvement: no improvement")
    if strategy == "on_drift":
        if evidence.drifted or evidence.open_flag:
            return Decision(False, "on_drift: drift awaiting review")
        return Decision(evidence.better, "refresh" if evidence.better else "on_drift: new fit not better")
    if evidence.open_flag or evidence.recent_flagged:
        return Decision(False, "adaptive: flagged, verdict not none")
    return Decision(evidence.better, "refresh" if evidence.better else "adaptive: new fit not better")


# ---------------------------------------------------------------- flags
def flagged_runs(timestamps: np.ndarray, flagged: np.ndarray, step: float) -> list[Flag]:
    """Consecutive flagged samples as [start, end] periods."""
    if not flagged.any():
        return []
    times = timestamps[flagged]
    breaks = np.flatnonzero(np.diff(times) > step * 1.5)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(times) - 1]])
    return [Flag(float(times[a]), float(times[b]), "anomaly") for a, b in zip(starts, ends, strict=True)]


def merge_flags(flags: list[Flag], gap: float) -> list[Flag]:
    """Unaccepted periods closer than ``gap`` become one; accepted ones are kept as they are."""
    accepted = [f for f in flags if f.accepted_at is not None]
    merged: list[Flag] = []
    for flag in sorted((f for f in flags if f.accepted_at is None), key=lambda f: f.start):
        if merged and flag.start - merged[-1].end <= gap:
            last = merged[-1]
            kind = "regression" if "regression" in (last.kind, flag.kind) else last.kind
            merged[-1] = Flag(last.start, max(last.end, flag.end), kind)
        else:
            merged.append(flag)
    return accepted + merged


def mask(timestamps: np.ndarray, values: np.ndarray, flags: list[Flag]) -> np.ndarray:
    masked = values.copy()
    for flag in flags:
        if flag.accepted_at is None:
            masked[(timestamps >= flag.start) & (timestamps <= flag.end)] = np.nan
    return masked


def slot_fraction(target: str, key: str) -> float:
    """A stable position in [0, 1) of the series inside the refit interval."""
    digest = hashlib.sha256(f"{target}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


# ---------------------------------------------------------------- the lifecycle
@dataclass
class SeriesMemory:
    flags: list[Flag] = field(default_factory=list)
    checked_until: float = -np.inf
    last_attempt: float | None = None
    action: tuple[str, str] | None = None  # (accept|reset, note) queued by the CLI
    pinned: int | None = None


class Lifecycle:
    """Per-series flags, pending actions and decisions; persisted when a store is given."""

    def __init__(self, store: BaselineStore | GuardedStore | None = None, telemetry: Telemetry | None = None) -> None:
        if isinstance(store, BaselineStore):
            store = GuardedStore(None, telemetry, store)
        self.store: GuardedStore | None = store
        self.memory: dict[tuple[str, str], SeriesMemory] = {}

    @classmethod
    def from_state_dir(
        cls, state_dir: str | None, telemetry: Telemetry | None = None, busy_timeout: float = BUSY_TIMEOUT
    ) -> Lifecycle:
        """In memory without ``state_dir``. A ``state_dir`` that cannot be a directory (a file, under a file, or
        missing and impossible to create: a typo, a volume that is not mounted) is a configuration error. A
        directory that exists but whose store cannot be used now (full, read-only, locked) is not: the service
        starts in memory, counts and logs it, and tries the store again at each refit pass."""
        if not state_dir:
            return cls(None)
        directory = Path(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("state_dir", f"{directory} is not a usable directory: {exc.strerror or exc}") from None
        return cls(GuardedStore.open(directory / STORE_FILE, telemetry, busy_timeout))

    def _mem(self, target: str, key: str) -> SeriesMemory:
        return self.memory.setdefault((target, key), SeriesMemory())

    # ------------------------------------------------------------ start
    def load(self, target: str) -> list[tuple[str, dict[str, str], FittedBaseline, BaselineMeta]]:
        """The stored active baselines of ``target``: scoring starts from them without refitting."""
        if self.store is None:
            return []
        loaded = self.store.read("load", lambda store: self._stored(store, target), [])
        for key, _, baseline, meta, flags in loaded:
            memory = self._mem(target, key)
            memory.flags = flags
            memory.checked_until = max([baseline.trained_to, *(f.end for f in flags)])
            memory.last_attempt = meta.created_at
        return [item[:4] for item in loaded]

    @staticmethod
    def _stored(store: BaselineStore, target: str) -> list[tuple]:
        labels = {s.key: s.labels for s in store.series(target)}
        return [
            (stored.key, labels[stored.key], stored.baseline,
             BaselineMeta(stored.version, stored.created_at, stored.reason), store.flags(target, stored.key))
            for stored in store.active(target) if stored.baseline is not None and stored.key in labels
        ]  # fmt: skip

    def records(self, target: str) -> dict[str, ScoreRecord]:
        """The stored score records of ``target``'s series (the calibration of their alert thresholds goes on
        from them after a restart); one that no longer parses starts over."""
        if self.store is None:
            return {}
        found = {}
        for key, text in self.store.read("load", lambda store: store.records(target), {}).items():
            try:
                found[key] = ScoreRecord.from_json(text)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                log.warning("stored score record of %s %s does not parse (%s): it starts over", target, key, exc)
        return found

    def save_records(self, target: str, records: dict[str, ScoreRecord], now: float) -> None:
        """Store the records. They stay in memory; a write the store refuses is retried at the next pass (as
        JSON of the record at that time), one that raced a change to a record is saved at the next refit."""
        if self.store is None or not records:
            return

        def write(store: BaselineStore, items: dict[str, ScoreRecord]) -> None:
            store.save_records(target, {key: record.to_json() for key, record in items.items()}, now)

        try:
            self.store.write_batch("records", target, dict(records), write)
        except RuntimeError as exc:  # a record changed while it was written
            log.warning("score records of target %s not saved: %s", target, exc)

    def flush(self) -> bool:
        """Write what the store refused so far (before the service stops); True when nothing is pending."""
        return self.store is None or self.store.flush()

    # ------------------------------------------------------------ refit pass
    def begin_pass(self, target: str, retention: float, now: float) -> set[str]:
        """Read the CLI's queued actions and pins; prune series unseen for ``retention``. Returns pruned keys."""
        if self.store is None:
            return set()
        self.store.begin_pass(now)  # retries what the store refused at the last pass
        pruned = set(self.store.read("prune", lambda store: store.prune(target, now - retention), []))
        for key in pruned:
            self.memory.pop((target, key), None)
        for record in self.store.read("read", lambda store: store.series(target), []):
            memory = self._mem(target, record.key)
            memory.pinned = record.pinned_version
            memory.action = (record.pending_action, record.pending_note) if record.pending_action else None
            if record.pending_action == "reset":
                memory.flags, memory.checked_until = [], -np.inf
        return pruned

    def pinned_version(self, target: str, key: str) -> int | None:
        return self._mem(target, key).pinned

    def due(self, target: str, key: str, has_baseline: bool, now: float, refit_every: float) -> bool:
        """Each series is refitted once per interval, at its own slot, so refits spread over the interval."""
        memory = self._mem(target, key)
        if not has_baseline or memory.action is not None or memory.last_attempt is None:
            return True
        offset = slot_fraction(target, key) * refit_every
        last_slot = now - ((now - offset) % refit_every)
        return memory.last_attempt < last_slot

    def training_values(self, target, series: Series, current: FittedBaseline | None, now: float) -> np.ndarray:
        """The series with its unaccepted flagged periods set to NaN (flags updated from ``current`` first)."""
        memory = self._mem(target.name, series.key)
        memory.last_attempt = now
        before = list(memory.flags)
        resetting = memory.action is not None and memory.action[0] == "reset"
        if current is not None and not resetting:  # a reset forgets what the old baseline flagged
            self._update_flags(target, series, current, memory)
        if memory.action is not None and memory.action[0] == "accept":
            for flag in memory.flags:
                if flag.accepted_at is None:
                    flag.accepted_at, flag.note = now, memory.action[1]
        if memory.flags != before:
            self._save_flags(target.name, series.key, memory.flags)
        return mask(series.timestamps, series.values, memory.flags)

    def _update_flags(self, target, series: Series, current: FittedBaseline, memory: SeriesMemory) -> None:
        since = max(memory.checked_until, current.trained_to)
        new = (series.timestamps > since) & np.isfinite(series.values)
        if not new.any():
            return
        times = series.timestamps[new]
        scores = self._scores(target, current, times, series.values[new])
        memory.flags = merge_flags(memory.flags + flagged_runs(times, scores > 1.0, target.step), MERGE_GAP)
        memory.checked_until = float(times[-1])

    @staticmethod
    def _scores(target, baseline: FittedBaseline, times: np.ndarray, values: np.ndarray, direction: str = ""):
        band = gated_band(baseline.predict(times), target.min_abs_deviation, target.min_rel_deviation)
        return anomaly_scores(values, band, direction or target.direction)

    def note_regression(self, target: str, key: str, start: float, end: float) -> None:
        """A regressed period from the regression verdicts: masked like an anomaly until accepted."""
        memory = self._mem(target, key)
        for flag in memory.flags:  # what a person accepted is not flagged again
            if flag.accepted_at is not None and flag.start <= start <= flag.end:
                start = flag.end + 1e-3
        if start > end:
            return
        before = list(memory.flags)
        memory.flags = merge_flags(memory.flags + [Flag(start, end, "regression")], MERGE_GAP)
        if memory.flags != before:
            self._save_flags(target, key, memory.flags)

    def _save_flags(self, target: str, key: str, flags: list[Flag]) -> None:
        if self.store is not None:
            kept = [replace(flag) for flag in flags]  # as they are now: accept() edits flags in place
            self.store.write("flags", target, key, lambda store: store.replace_flags(target, key, kept))

    def _save_decision(self, target: str, key: str, decision: Callable[[], str]) -> None:
        if self.store is not None:
            self.store.write("decision", target, key, lambda store: store.set_decision(target, key, decision()))

    # ------------------------------------------------------------ decision
    def consider(
        self, target, series: Series, training: np.ndarray, current: FittedBaseline | None,
        current_meta: BaselineMeta | None, candidate: FittedBaseline, now: float,
        stored: tuple[bytes, dict] | None = None,
    ) -> tuple[FittedBaseline, BaselineMeta | None, str]:  # fmt: skip
        """The baseline the series keeps or adopts after a successful refit, its metadata, and a note.
        ``stored`` is the candidate's serialised state and fit quality when a fit worker computed them."""
        memory = self._mem(target.name, series.key)
        action = memory.action[0] if memory.action else None
        if current is None:
            decision = Decision(True, "reset" if action == "reset" else "initial")
        else:
            evidence = self.evidence(target, series, training, current, candidate, memory, now, current_meta)
            decision = decide(target.update_strategy, evidence, target.update_every, action, memory.pinned is not None)
        if action is not None and (decision.adopt or decision.reason == "pinned"):
            memory.action = None
            if self.store is not None:
                self.store.write("action", target.name, series.key,
                                 lambda store: store.clear_action(target.name, series.key))  # fmt: skip
        if not decision.adopt:
            self._save_decision(target.name, series.key, lambda: f"kept: {decision.reason}")
            return current, current_meta, f"kept v{current_meta.version if current_meta else '?'}: {decision.reason}"
        adopted = self._shifted(candidate, series, now) if decision.shift else candidate
        meta = self._record(target.name, series, training, adopted, decision.reason, now, current_meta,
                            stored if adopted is candidate else None)  # fmt: skip
        return adopted, meta, ""

    def evidence(self, target, series, training, current, candidate, memory, now, current_meta) -> Evidence:
        recent = (series.timestamps > now - RECENT_SECONDS) & np.isfinite(series.values)
        evidence = Evidence(age=now - (current_meta.created_at if current_meta else current.trained_to))
        unaccepted = [f for f in memory.flags if f.accepted_at is None]
        evidence.open_flag = any(f.end >= memory.checked_until - MERGE_GAP for f in unaccepted)
        evidence.recent_flagged = any(f.end > now - RECENT_SECONDS for f in unaccepted)
        if recent.sum() >= MIN_RECENT:
            times, values = series.timestamps[recent], series.values[recent]
            good = "higher_is_better" if target.direction == "lower_is_better" else "lower_is_better"
            if target.direction != "both":
                evidence.improved = float(np.mean(self._scores(target, current, times, values, good) > 1)) >= MOST
            evidence.drifted = float(np.mean(self._scores(target, current, times, values, "both") > 1)) >= MOST
        clean = recent & np.isfinite(training)
        if clean.sum() >= MIN_RECENT:
            times, values = series.timestamps[clean], training[clean]
            evidence.current_error = float(np.mean(np.abs(values - current.predict(times).expected)))
            evidence.candidate_error = float(np.mean(np.abs(values - candidate.predict(times).expected)))
        elif evidence.improved:  # recent samples are all on the good side: compare on them
            times, values = series.timestamps[recent], series.values[recent]
            evidence.current_error = float(np.mean(np.abs(values - current.predict(times).expected)))
            evidence.candidate_error = float(np.mean(np.abs(values - candidate.predict(times).expected)))
        return evidence

    @staticmethod
    def _shifted(candidate: FittedBaseline, series: Series, now: float) -> FittedBaseline:
        """``candidate`` moved to the median level of the recent samples (the level a person accepted)."""
        recent = (series.timestamps > now - RECENT_SECONDS) & np.isfinite(series.values)
        if recent.sum() < MIN_RECENT:
            return candidate
        times, values = series.timestamps[recent], series.values[recent]
        offset = float(np.median(values - candidate.predict(times).expected))
        inner = candidate.inner if isinstance(candidate, ShiftedBaseline) else candidate
        shifted = ShiftedBaseline(inner, offset)
        observed = np.isfinite(series.values)
        return attach_reference(shifted, series.timestamps[observed], series.values[observed])

    def _record(self, target: str, series: Series, training: np.ndarray, baseline: FittedBaseline, reason: str,
                now: float, current_meta: BaselineMeta | None, stored: tuple[bytes, dict] | None = None
                ) -> BaselineMeta:  # fmt: skip
        """The adopted baseline's metadata. The version is the next one; when the store cannot save it now it
        is adopted anyway and the save retried, and the version the store gives it replaces this one."""
        meta = BaselineMeta((current_meta.version if current_meta else 0) + 1, now, reason)
        if self.store is None:
            return meta
        key = series.key
        state, quality = stored if stored is not None else (None, fit_quality(baseline, series.timestamps, training))
        params = getattr(baseline, "params", None) or {"seasonality": baseline.seasonality.name}
        digest = fingerprint(series.timestamps, training)

        def save(store: BaselineStore) -> None:
            meta.version = store.save(target, key, baseline, fingerprint=digest, quality=quality, reason=reason,
                                      created_at=now, params=params, state=state)  # fmt: skip

        self.store.write("save", target, key, save)
        self._save_decision(target, key, lambda: f"adopted v{meta.version}: {reason}")
        return meta

    def activate_pinned(self, target: str, key: str) -> tuple[FittedBaseline, BaselineMeta] | None:
        """The pinned version of a series when it is not the one in use (a pin set from the CLI)."""
        version = self._mem(target, key).pinned
        if self.store is None or version is None:
            return None
        stored = self.store.read("read", lambda store: store.get(target, key, version), None)
        if stored is None or stored.baseline is None:
            return None
        return stored.baseline, BaselineMeta(stored.version, stored.created_at, stored.reason)

    def seen(self, target: str, series: list[Series], now: float) -> None:
        if self.store is None:
            return
        seen = {item.key: (item.labels, now) for item in series}
        self.store.write_batch("touch", target, seen, lambda store, items: store.touch_many(target, items))


def fit_quality(baseline: FittedBaseline, timestamps: np.ndarray, values: np.ndarray) -> dict:
    """In-sample figures on the (masked) training data: mean absolute error, residual scale, band coverage."""
    observed = np.isfinite(values)
    if observed.sum() == 0:
        return {}
    band = baseline.predict(timestamps[observed])
    residuals = values[observed] - band.expected
    inside = (values[observed] >= band.lower) & (values[observed] <= band.upper)
    return {"samples": int(observed.sum()), "mae": float(np.mean(np.abs(residuals))),
            "residual_scale": robust_scale(residuals), "band_coverage": float(np.mean(inside))}  # fmt: skip


__all__ = ["Lifecycle", "ShiftedBaseline", "Reference", "STRATEGIES", "decide", "Evidence"]
