"""Store faults never stop the analysis (issue 26 item 6), driven for real: a real Prometheus with 50 short series,
the real Analyzer and its SQLite store on a full disk (a 16 MB tmpfs), an immutable file or directory (chattr +i),
a store locked by another process, and a corrupt file that cannot be moved aside. In each: every series gets a
baseline and is scored ``ok``, ``perfsentinel_store_errors_total`` counts the failures (the exporter's own
counter), one warning per operation and pass is logged, and once the store is usable again the next pass saves
what was kept in memory (read back by a fresh ``BaselineStore``) and the counter stops rising.

mount and chattr need root and a kernel/filesystem that allows them; those tests skip with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from analyzer.config import build_config
from analyzer.models.fitting import FitPool
from analyzer.prometheus.localprom import BackfillSeries, LocalPrometheus
from analyzer.prometheus.reader import PrometheusReader
from analyzer.service.pipeline import Analyzer
from analyzer.state.guarded import GuardedStore
from analyzer.state.lifecycle import Lifecycle
from analyzer.state.store import STORE_FILE, BaselineStore, Flag
from analyzer.synthetic import generate
from exporter.selfmetrics import SelfMetrics
from tests.conftest import require_tools

pytestmark = pytest.mark.integration
STEP = 300.0
NOW = np.floor(time.time() / STEP) * STEP
SERIES = 50
KEY = '{service="s00"}'


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[LocalPrometheus]:
    """50 series of 2.5 days at 5 minutes with no weekly shape (2 days of history could not learn it), shared by
    the tests of this module (they only read it)."""
    require_tools("prometheus", "promtool")
    local = LocalPrometheus(tmp_path_factory.mktemp("prometheus"))
    local.backfill([
        BackfillSeries("latency_seconds", {"service": f"s{i:02d}"}, s.timestamps, s.values)
        for i, s in ((i, generate(days=2.5, seed=i, end=NOW, weekend_dip=0.0)) for i in range(SERIES))
    ])  # fmt: skip
    local.start()
    yield local
    local.stop()


def config(url: str, state_dir: Path | None):
    return build_config({
        "prometheus": {"url": url, "retries": 1},
        **({"state_dir": str(state_dir)} if state_dir else {}),
        "schedule": {"fit_workers": 1},
        "targets": [{"name": "latency", "query": "latency_seconds", "history": "2d", "min_history": "1d",
                     "model": "profile"}],
    }, env={})  # fmt: skip


def analyzer(url: str, state_dir: Path | None, telemetry: SelfMetrics, busy_timeout: float | None = None) -> Analyzer:
    """The service's analyzer; with ``busy_timeout`` its lifecycle is built here to shorten the lock wait."""
    cfg = config(url, state_dir)
    lifecycle = None if busy_timeout is None else Lifecycle.from_state_dir(cfg.state_dir, telemetry, busy_timeout)
    return Analyzer(cfg, PrometheusReader(cfg.prometheus), telemetry, pool=FitPool(1), lifecycle=lifecycle)


def store_errors(telemetry: SelfMetrics) -> dict[str, float]:
    return {sample.labels["operation"]: sample.value for metric in telemetry.store_errors.collect()
            for sample in metric.samples if sample.name.endswith("_total")}  # fmt: skip


def assert_all_scored_ok(service: Analyzer, now: float) -> None:
    results = service.score(now).results
    assert len(results) == SERIES
    assert {r.status for r in results} == {"ok"}, {r.status for r in results}
    assert all(r.baseline_version is not None and r.expected is not None for r in results)


def assert_stored(state_dir: Path) -> None:
    """What the service kept in memory is in the store now, as a fresh reader (the CLI, a restart) sees it."""
    store = BaselineStore(state_dir / STORE_FILE, create=False)
    try:
        active = store.active("latency")
        assert len(active) == SERIES and all(a.baseline is not None for a in active)
        assert len(store.series("latency")) == SERIES
        assert all(re.match(r"(adopted v\d+|kept): ", s.decision) for s in store.series("latency"))
        assert len(store.records("latency")) == SERIES
    finally:
        store.close()


def store_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "analyzer.state.guarded" and r.levelno == logging.WARNING]  # fmt: skip


def close(service: Analyzer) -> None:
    if service.lifecycle.store is not None and service.lifecycle.store.store is not None:
        service.lifecycle.store.store.close()
    service.pool.close()


def root_only() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (mount, chattr)")


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr +i path`` for the block; skips the test where the filesystem or kernel refuses it."""
    root_only()
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not allowed here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def mutable_again(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (room for the 50 baselines once freed), unmounted after the test."""
    root_only()
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs not allowed here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem has no byte left."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 4096)
    return filler


# ---------------------------------------------------------------- the faults
def test_a_full_disk_keeps_every_refit_in_memory_and_saves_it_when_space_is_freed(prometheus, tiny_disk, caplog):
    telemetry = SelfMetrics()
    service = analyzer(prometheus.url, tiny_disk, telemetry)  # the store is created while there is room
    try:
        filler = fill(tiny_disk)
        caplog.set_level(logging.INFO, "analyzer.state.guarded")
        service.refit(NOW)
        assert_all_scored_ok(service, NOW)  # every series was adopted and scored although nothing was saved
        failed = store_errors(telemetry)
        assert sum(failed.values()) >= SERIES and failed.get("save", 0) >= 1, failed
        warnings = store_warnings(caplog)
        assert len(warnings) == 1 and "database or disk is full" in warnings[0], warnings  # not one a series
        filler.unlink()
        service.refit(NOW + STEP)  # the next pass saves what was kept
        assert store_errors(telemetry) == failed  # and the counter stops rising
        assert_stored(tiny_disk)
        assert any("usable again" in r.getMessage() for r in caplog.records)
        service.refit(NOW + 2 * STEP)
        assert_all_scored_ok(service, NOW + 2 * STEP)
        assert store_errors(telemetry) == failed
    finally:
        close(service)


@pytest.mark.parametrize("what", ["file", "directory"])
def test_an_immutable_store_file_or_directory_keeps_the_analysis_going(prometheus, tmp_path, what, caplog):
    state = tmp_path / "state"
    BaselineStore.in_dir(state).close()  # an existing store, closed cleanly (no -wal/-shm beside it)
    locked = state / STORE_FILE if what == "file" else state
    telemetry = SelfMetrics()
    caplog.set_level(logging.WARNING, "analyzer.state.guarded")
    with immutable(locked):
        service = analyzer(prometheus.url, state, telemetry)
        try:
            service.refit(NOW)
            assert_all_scored_ok(service, NOW)
            failed = store_errors(telemetry)
            assert sum(failed.values()) > 0, failed
            if what == "directory":  # no -shm can be created: the store does not open; the service starts in memory
                assert failed.get("open", 0) >= 1
            assert len(store_warnings(caplog)) <= 2
            mutable_again(locked)
            service.refit(NOW + STEP)
            assert store_errors(telemetry) == failed
            assert_stored(state)
        finally:
            close(service)


def lock_holder(path: Path, exclusive_mode: bool = False) -> subprocess.Popen:
    """Another process holding ``BEGIN EXCLUSIVE`` on the store until a line arrives on its stdin. With
    ``exclusive_mode`` it keeps SQLite's exclusive locking mode, which blocks readers too."""
    mode = "d.execute('PRAGMA locking_mode=EXCLUSIVE'); d.execute('UPDATE meta SET value = value'); " \
        if exclusive_mode else ""  # fmt: skip
    code = (
        f"import sqlite3, sys; d = sqlite3.connect({str(path)!r}, isolation_level=None); {mode}"
        "d.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.readline(); d.execute('COMMIT')"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def release(holder: subprocess.Popen) -> None:
    if holder.poll() is None:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)


def timed_pass(service: Analyzer, now: float) -> float:
    started = time.monotonic()
    service.refit(now)
    service.score(now)
    return time.monotonic() - started


def test_a_store_locked_by_another_process_costs_one_busy_timeout_per_pass_not_one_per_series(prometheus,
                                                                                              tmp_path):  # fmt: skip
    busy = 2.0  # the default is 10 s; per series this would be 50 x 2 s at least
    reference = analyzer(prometheus.url, None, SelfMetrics())
    try:
        in_memory = timed_pass(reference, NOW)
    finally:
        close(reference)
    state = tmp_path / "state"
    BaselineStore.in_dir(state).close()
    telemetry = SelfMetrics()
    holder = lock_holder(state / STORE_FILE)
    try:
        service = analyzer(prometheus.url, state, telemetry, busy_timeout=busy)
        try:
            locked = timed_pass(service, NOW)
            assert_all_scored_ok(service, NOW)
            failed = store_errors(telemetry)
            assert sum(failed.values()) > 0, failed
            assert busy * 0.9 < locked < in_memory * 1.5 + 3 * busy, (locked, in_memory)
            second = timed_pass(service, NOW + STEP)  # still locked: one wait again, the pending writes kept
            assert second < in_memory * 1.5 + 3 * busy, (second, in_memory)
            assert sum(store_errors(telemetry).values()) > sum(failed.values())
            release(holder)
            service.refit(NOW + 2 * STEP)
            assert_stored(state)
            kept = store_errors(telemetry)
            service.refit(NOW + 3 * STEP)
            assert store_errors(telemetry) == kept
        finally:
            close(service)
    finally:
        release(holder)


def test_a_store_that_cannot_be_read_at_start_means_starting_without_stored_baselines(prometheus, tmp_path):
    """Another process keeps SQLite's exclusive locking mode: even reads wait and fail. The service starts in
    memory after one busy timeout, counted, and uses the store once it is free again."""
    state = tmp_path / "state"
    first = analyzer(prometheus.url, state, SelfMetrics())
    try:
        first.refit(NOW)  # a store with 50 stored baselines
    finally:
        close(first)
    telemetry = SelfMetrics()
    holder = lock_holder(state / STORE_FILE, exclusive_mode=True)
    try:
        started = time.monotonic()
        service = analyzer(prometheus.url, state, telemetry, busy_timeout=1.0)
        assert time.monotonic() - started < 1.0 * 3 + 2
        try:
            assert service.states["latency"] == {}  # nothing loaded
            assert sum(store_errors(telemetry).values()) >= 1
            service.refit(NOW + STEP)  # still locked: everything is refitted in memory
            assert_all_scored_ok(service, NOW + STEP)
            release(holder)
            service.refit(NOW + 2 * STEP)
            assert_stored(state)
            store = BaselineStore(state / STORE_FILE, create=False)
            assert [v.version for v in store.versions("latency", KEY)] == [1, 2]  # stored before, then the new one
            store.close()
            assert service.states["latency"][KEY].meta.version == 2  # the version the store gave, once saved
        finally:
            close(service)
    finally:
        release(holder)


def test_a_corrupt_store_that_cannot_be_moved_aside_leaves_the_service_running_in_memory(prometheus, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    garbage = b"not a baseline store " * 500
    (state / STORE_FILE).write_bytes(garbage)
    telemetry = SelfMetrics()
    with immutable(state / STORE_FILE):
        service = analyzer(prometheus.url, state, telemetry)
        try:
            assert store_errors(telemetry) == {"open": 1.0}
            service.refit(NOW)
            assert_all_scored_ok(service, NOW)
            assert (state / STORE_FILE).read_bytes() == garbage  # untouched
            mutable_again(state / STORE_FILE)
            service.refit(NOW + STEP)  # now it is moved aside and a fresh store gets what was kept
            (aside,) = state.glob(f"{STORE_FILE}.corrupt-*")
            assert aside.read_bytes() == garbage  # moved, never deleted
            assert_stored(state)
        finally:
            close(service)


def test_a_state_dir_that_cannot_be_created_is_a_config_error(tmp_path):
    """A missing directory that cannot be created (a typo, a volume that is not mounted) is reported clearly,
    not run in memory unnoticed."""
    parent = tmp_path / "readonly"
    parent.mkdir()
    path = tmp_path / "config.yml"
    path.write_text(f"prometheus: {{url: 'http://127.0.0.1:1'}}\nstate_dir: {parent / 'perfsentinal'}\n"
                    "targets: [{name: t, query: q}]\n")  # fmt: skip
    with immutable(parent):
        done = subprocess.run([sys.executable, "-m", "analyzer", "once", "--config", str(path)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "state_dir" in done.stderr and "not a usable directory" in done.stderr, done.stderr


def test_once_on_a_read_only_state_dir_analyses_and_warns_once(prometheus, tmp_path):
    state = tmp_path / "state"
    BaselineStore.in_dir(state).close()
    path = tmp_path / "config.yml"
    path.write_text(f"prometheus: {{url: '{prometheus.url}'}}\nstate_dir: {state}\n"
                    "targets: [{name: latency, query: latency_seconds, history: 2d, min_history: 1d, "
                    "model: profile}]\n")  # fmt: skip
    with immutable(state):
        done = subprocess.run([sys.executable, "-m", "analyzer", "once", "--config", str(path), "--output", "json"],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("baseline store") == 1 and "unable to open database file" in done.stderr, done.stderr
    assert done.stdout.count('"status": "ok"') == SERIES


# ---------------------------------------------------------------- the guard itself, on a real locked store
def test_while_the_store_is_locked_one_warning_for_ten_thousand_writes_and_only_the_latest_write_is_kept(
    tmp_path, caplog
):
    path = tmp_path / STORE_FILE
    BaselineStore(path).close()
    telemetry = SelfMetrics()
    guarded = GuardedStore.open(path, telemetry, busy_timeout=0.2)
    guarded.begin_pass(1.0)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    caplog.set_level(logging.WARNING, "analyzer.state.guarded")
    started = time.monotonic()
    for i in range(10_000):  # 10,000 series whose flags changed: one wait, one warning, 10,000 counted
        guarded.write("flags", "latency", f"k{i}", lambda store, i=i: store.replace_flags("latency", f"k{i}", []))
    for version in range(3):  # the same series three times: only the latest is kept
        flags = [Flag(float(version), float(version) + 1, "anomaly")]
        guarded.write("flags", "latency", KEY, lambda store, flags=flags: store.replace_flags("latency", KEY, flags))
    assert time.monotonic() - started < 0.2 * 3 + 2
    assert len(store_warnings(caplog)) == 1 and "database is locked" in store_warnings(caplog)[0]
    assert store_errors(telemetry) == {"flags": 10_003.0}
    assert len(guarded.pending) == 10_001
    blocker.execute("ROLLBACK")
    guarded.begin_pass(2.0)
    assert guarded.pending == {} and store_errors(telemetry) == {"flags": 10_003.0}
    store = BaselineStore(path, create=False)
    assert store.flags("latency", KEY) == [Flag(2.0, 3.0, "anomaly")]
    store.close()
