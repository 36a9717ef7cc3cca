"""The SQLite baseline store: versions, serialisation, pins, pruning, bad files, and a restart that scores
from stored baselines without refitting (against a real Prometheus)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from analyzer.commands.cli import main
from analyzer.config import build_config
from analyzer.detection.reference import attach_reference
from analyzer.models import FitContext, get_model
from analyzer.models.fitting import FitPool
from analyzer.models.shifted import ShiftedBaseline
from analyzer.prometheus.localprom import BackfillSeries
from analyzer.prometheus.reader import PrometheusReader
from analyzer.service.pipeline import Analyzer
from analyzer.state.lifecycle import Lifecycle, slot_fraction
from analyzer.state.store import (
    FORMAT_VERSION,
    KEEP_VERSIONS,
    STORE_FILE,
    BaselineStore,
    StoreError,
    StoreUnavailable,
    dump_baseline,
    load_baseline,
)
from analyzer.synthetic import generate

KEY = '{service="checkout"}'


def fitted(model: str = "stl", seed: int = 0):
    series = generate(days=9, seed=seed)
    baseline = get_model(model).fit(series.timestamps, series.values, FitContext(300.0))
    return attach_reference(baseline, series.timestamps, series.values), series


def save(store: BaselineStore, baseline, created_at: float = 1000.0, reason: str = "initial") -> int:
    store.touch_series("latency", KEY, {"service": "checkout"}, created_at)
    return store.save("latency", KEY, baseline, fingerprint="f", quality={"mae": 0.1}, reason=reason,
                      created_at=created_at)  # fmt: skip


@pytest.mark.parametrize("model", ["stl", "mstl", "profile"])
def test_serialised_baselines_predict_exactly_as_before(model):
    baseline, series = fitted(model)
    future = series.timestamps[-1] + 300.0 * np.arange(1, 4000)
    again = load_baseline(dump_baseline(baseline))
    assert type(again) is type(baseline)
    assert again.seasonality.note.endswith("with its own weekend shape")  # 9 days, two weekends with a dip
    for a, b in zip(baseline.predict(future).__dict__.values(), again.predict(future).__dict__.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.reference.residuals, baseline.reference.residuals)
    assert again.reference.spacing == baseline.reference.spacing == 300.0


def test_a_reference_stored_before_it_had_a_spacing_loads_with_spacing_unknown():
    baseline, _ = fitted()
    stored = json.loads(zlib.decompress(dump_baseline(baseline)))
    del stored["extras"]["reference"]["fields"]["spacing"]
    again = load_baseline(zlib.compress(json.dumps(stored).encode()))
    assert again.reference.spacing == 0.0 and again.reference.scale == baseline.reference.scale


def test_the_block_medians_of_a_thinned_reference_round_trip_and_older_rows_load_without_them():
    series = generate(days=4, step=60.0, seed=1)  # 3 days at 1 minute: thinned to 1,000 with block medians
    baseline = get_model("stl").fit(series.timestamps, series.values, FitContext(60.0))
    attach_reference(baseline, series.timestamps, series.values)
    again = load_baseline(dump_baseline(baseline))
    assert again.reference.block_medians.size == 1000
    np.testing.assert_array_equal(again.reference.block_medians, baseline.reference.block_medians)
    stored = json.loads(zlib.decompress(dump_baseline(baseline)))
    del stored["extras"]["reference"]["fields"]["block_medians"]  # written before the field existed
    older = load_baseline(zlib.compress(json.dumps(stored).encode()))
    assert older.reference.block_medians is None and older.reference.residuals.size == 1000


def test_shifted_baseline_round_trips():
    baseline, series = fitted()
    shifted = ShiftedBaseline(baseline, 0.05)
    again = load_baseline(dump_baseline(shifted))
    times = series.timestamps[-10:]
    np.testing.assert_allclose(again.predict(times).expected, baseline.predict(times).expected + 0.05)
    assert again.model == "stl" and again.trained_to == baseline.trained_to


def test_versions_increment_one_is_active_and_old_ones_are_deleted_unless_pinned(tmp_path):
    store = BaselineStore(tmp_path / STORE_FILE)
    baseline, _ = fitted()
    assert save(store, baseline) == 1
    store.pin("latency", KEY, 1)
    versions = [save(store, baseline, 1000.0 + i) for i in range(KEEP_VERSIONS + 3)]
    assert versions[-1] == KEEP_VERSIONS + 4
    kept = [v.version for v in store.versions("latency", KEY)]
    assert kept[0] == 1  # pinned, so kept
    assert len(kept) == KEEP_VERSIONS + 1
    assert [v.version for v in store.versions("latency", KEY) if v.active] == [versions[-1]]
    (active,) = store.active("latency")
    assert active.baseline is not None and active.quality == {"mae": 0.1}


def test_prune_forgets_series_not_seen_for_the_retention(tmp_path):
    store = BaselineStore(tmp_path / STORE_FILE)
    baseline, _ = fitted()
    save(store, baseline, created_at=1000.0)
    store.touch_series("latency", '{service="fresh"}', {"service": "fresh"}, 9000.0)
    assert store.prune("latency", older_than=5000.0) == [KEY]
    assert [s.key for s in store.series("latency")] == ['{service="fresh"}']
    assert store.versions("latency", KEY) == []


def test_a_file_that_is_not_sqlite_gives_a_clear_error_or_a_clean_rebuild(tmp_path):
    path = tmp_path / STORE_FILE
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="is unusable"):
        BaselineStore(path)
    store = BaselineStore.open_or_rebuild(path)  # the service: move aside, start empty
    assert store.series() == []
    assert list(tmp_path.glob(f"{STORE_FILE}.corrupt-*"))
    done = subprocess.run([sys.executable, "-m", "analyzer", "baseline", "list", "--store", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "(no stored baselines)" in done.stdout


def test_a_corrupt_file_is_moved_aside_with_its_wal_and_shm_and_nothing_is_deleted(tmp_path):
    path = tmp_path / STORE_FILE
    files = {"": b"not a database" * 100, "-wal": b"wal bytes", "-shm": b"shm bytes"}
    for suffix, content in files.items():
        (tmp_path / f"{STORE_FILE}{suffix}").write_bytes(content)
    BaselineStore.open_or_rebuild(path).close()
    (aside,) = tmp_path.glob(f"{STORE_FILE}.corrupt-*[0-9]")
    for suffix, content in files.items():
        assert (tmp_path / f"{aside.name}{suffix}").read_bytes() == content


def test_a_locked_or_unwritable_store_is_unavailable_never_moved_aside(tmp_path):
    path = tmp_path / STORE_FILE
    store = BaselineStore(path)
    baseline, _ = fitted("profile")
    save(store, baseline)
    store.close()
    holder = sqlite3.connect(path, isolation_level=None)  # another connection keeps an exclusive lock: no reader
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("UPDATE meta SET value = value")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="locked"):
        BaselineStore.open_or_rebuild(path, busy_timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 5
    holder.close()
    assert list(tmp_path.glob("*.corrupt-*")) == []
    assert len(BaselineStore(path).active("latency")) == 1  # the user's store, untouched


def test_cli_reports_a_missing_or_corrupt_store_without_a_traceback(tmp_path):
    missing = tmp_path / "none.sqlite"
    command = [sys.executable, "-m", "analyzer", "baseline", "list", "--store"]
    done = subprocess.run([*command, str(missing)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no baseline store" in done.stderr and "Traceback" not in done.stderr
    assert not missing.exists()
    corrupt = tmp_path / "bad.sqlite"
    corrupt.write_bytes(b"\0garbage" * 500)
    done = subprocess.run([*command, str(corrupt)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "unusable" in done.stderr and "Traceback" not in done.stderr


def test_a_newer_format_is_refused(tmp_path):
    path = tmp_path / STORE_FILE
    BaselineStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(FORMAT_VERSION + 1),))
    with pytest.raises(StoreError, match="format"):
        BaselineStore(path)


def test_a_row_that_no_longer_decodes_is_skipped_and_refitted(tmp_path):
    store = BaselineStore(tmp_path / STORE_FILE)
    baseline, _ = fitted()
    save(store, baseline)
    store.db.execute("UPDATE baselines SET state = ?", (b"not zlib",))
    (record,) = store.active("latency")
    assert record.baseline is None
    assert Lifecycle(store).load("latency") == []  # nothing to score from: the series is refitted


def test_cli_list_show_accept_pin_reset(tmp_path, capsys):
    store = BaselineStore(tmp_path / STORE_FILE)
    baseline, _ = fitted()
    save(store, baseline)
    save(store, baseline, 2000.0, "refresh")

    def run(*args: str) -> subprocess.CompletedProcess:
        code = main(["baseline", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    listed = run("list", "--store", str(store.path))
    assert listed.returncode == 0 and KEY in listed.stdout and "refresh" in listed.stdout
    shown = run("show", "--store", str(store.path), "latency", "service=checkout")
    assert "v1" in shown.stdout and "* v2" in shown.stdout
    assert run("accept", "--store", str(store.path), "latency", "service=checkout", "--note", "ok").returncode == 0
    record = store.series_record("latency", KEY)
    assert (record.pending_action, record.pending_note) == ("accept", "ok")
    assert run("pin", "--store", str(store.path), "latency", KEY, "--version", "1").returncode == 0
    assert [v.version for v in store.versions("latency", KEY) if v.active] == [1]
    assert store.series_record("latency", KEY).pinned_version == 1
    bad = run("pin", "--store", str(store.path), "latency", KEY, "--version", "9")
    assert bad.returncode == 1 and "no stored version 9" in bad.stderr
    assert run("reset", "--store", str(store.path), "latency", KEY).returncode == 0
    assert store.versions("latency", KEY) == [] and store.series_record("latency", KEY).pending_action == "reset"
    unknown = run("accept", "--store", str(store.path), "latency", "service=nope")
    assert unknown.returncode == 1 and "match" in unknown.stderr


@pytest.mark.integration
def test_restart_scores_from_stored_baselines_without_refitting(start_prometheus, tmp_path):
    now = np.floor(time.time() / 300.0) * 300.0
    series = [generate(days=9, seed=seed, end=now) for seed in (1, 2, 3)]
    prometheus = start_prometheus([BackfillSeries("latency_seconds", {"service": f"s{i}"}, s.timestamps, s.values)
                                   for i, s in enumerate(series)])  # fmt: skip
    config = build_config({"prometheus": {"url": prometheus.url}, "state_dir": str(tmp_path / "state"),
                           "targets": [{"name": "latency", "query": "latency_seconds", "history": "8d"}]},
                          env={})  # fmt: skip

    class CountingTelemetry:
        def __init__(self):
            self.fits = 0

        def fit_finished(self, model, outcome, seconds):
            self.fits += 1

        def __getattr__(self, name):
            return lambda *args: None

    first = Analyzer(config, PrometheusReader(config.prometheus), pool=FitPool(1))
    first.refit(now)
    before = {tuple(r.labels.items()): r for r in first.score(now).results}
    assert all(r.status == "ok" and r.baseline_version == 1 for r in before.values())

    telemetry = CountingTelemetry()
    restarted = Analyzer(config, PrometheusReader(config.prometheus), telemetry, pool=FitPool(1))
    after = {tuple(r.labels.items()): r for r in restarted.score(now + 60).results}  # no refit call at all
    assert after.keys() == before.keys()
    for labels, result in after.items():
        assert result.status == "ok"
        assert result.expected == pytest.approx(before[labels].expected)
        assert result.baseline_version == 1 and result.baseline_age_seconds == pytest.approx(60.0)
    # the score records (what the alert thresholds are calibrated from) come back as they were at the stop
    first.save_records()
    kept = Analyzer(config, PrometheusReader(config.prometheus), pool=FitPool(1))
    for key, state in first.states["latency"].items():
        record = kept.states["latency"][key].record
        assert state.record.latest is not None and record.latest == state.record.latest
        assert record.started == state.record.started and record.maxima.keys() == state.record.maxima.keys()
        for statistic, hours in state.record.maxima.items():  # six significant digits kept
            assert record.maxima[statistic] == pytest.approx(hours, rel=1e-5)
    # the first refit pass after a restart fits only the series whose slot in the interval came up meanwhile
    restarted.refit(now + 120)
    slots = [slot_fraction("latency", key) * 3600.0 for key in (f'{{service="s{i}"}}' for i in range(3))]
    assert telemetry.fits == sum(1 for slot in slots if (now - slot) % 3600.0 > (now + 120 - slot) % 3600.0)


def test_score_records_are_kept_replaced_forgotten_with_their_series_and_an_unreadable_one_skipped(tmp_path):
    store = BaselineStore(tmp_path / STORE_FILE)
    store.touch_series("latency", KEY, {"service": "checkout"}, 1000.0)
    store.save_records("latency", {KEY: '{"a": 1}', "other": '{"b": 2}'}, 1000.0)
    store.save_records("latency", {KEY: '{"a": 3}'}, 2000.0)
    assert store.records("latency") == {KEY: '{"a": 3}', "other": '{"b": 2}'}
    assert store.records("errors") == {}
    store.db.execute("UPDATE records SET record = ? WHERE key = 'other'", (b"not zlib",))
    assert store.records("latency") == {KEY: '{"a": 3}'}  # the unreadable one starts over, the rest loads
    store.reset("latency", KEY)
    assert KEY not in store.records("latency")
    lifecycle = Lifecycle(store)
    store.save_records("latency", {KEY: "[1, 2]"}, 3000.0)  # JSON, but not a record
    assert lifecycle.records("latency") == {}


def test_baseline_families_are_promtool_clean_and_rename_clashing_labels(tmp_path):
    import shutil

    from analyzer.results import SeriesResult, Snapshot
    from exporter.snapshot import snapshot_families
    from exporter.text import render

    result = SeriesResult("latency", {"service": "checkout", "version": "1.2"}, "ok", "", 1.7e9, 0.3, 0.2, 0.1, 0.3,
                          2.0, "stl", "weekly", baseline_version=3, baseline_age_seconds=120.0,
                          baseline_reason="accepted", baseline_trained_from=1.69e9,
                          baseline_trained_to=1.7e9)  # fmt: skip
    from prometheus_client.parser import text_string_to_metric_families

    text = render(snapshot_families(Snapshot(1.7e9, [result], []))).decode()
    samples = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}  # label order aside
    age, info = samples["perfsentinel_baseline_age_seconds"], samples["perfsentinel_baseline_info"]
    assert age.labels == {"service": "checkout", "version": "1.2", "target": "latency"} and age.value == 120.0
    assert info.labels == {"service": "checkout", "exported_version": "1.2", "target": "latency", "model": "stl",
                           "version": "3", "reason": "accepted", "trained_from": "2023-07-22T04:26:40Z",
                           "trained_to": "2023-11-14T22:13:20Z"}  # fmt: skip
    assert info.value == 1.0
    if shutil.which("promtool"):
        done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_an_unusable_state_dir_is_a_config_error_not_a_traceback(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the state directory should be")
    config = tmp_path / "config.yml"
    config.write_text(f"prometheus: {{url: 'http://127.0.0.1:1'}}\nstate_dir: {blocker / 'state'}\n"
                      "targets: [{name: t, query: q}]\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "analyzer", "once", "--config", str(config)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "state_dir" in done.stderr and "Traceback" not in done.stderr


def _service(config_path, port: int) -> subprocess.Popen:
    import os

    return subprocess.Popen([sys.executable, "-m", "analyzer", "run", "--config", str(config_path), "--listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def _metrics(port: int) -> dict:
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    body = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {f.name: f for f in text_string_to_metric_families(body)}


def _wait(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except (OSError, KeyError, ValueError):  # not listening yet, or not published yet
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError("condition not met in time")


@pytest.mark.integration
def test_restarted_service_publishes_stored_baselines_before_any_fit(start_prometheus, tmp_path):
    import signal

    from analyzer.prometheus.localprom import free_port

    now = np.floor(time.time() / 300.0) * 300.0
    series = [generate(days=6, seed=seed, end=now) for seed in (1, 2)]
    prometheus = start_prometheus([BackfillSeries("latency_seconds", {"service": f"s{i}"}, s.timestamps, s.values)
                                   for i, s in enumerate(series)])  # fmt: skip
    config_path = tmp_path / "config.yml"
    config_path.write_text(f"prometheus: {{url: '{prometheus.url}'}}\nstate_dir: {tmp_path / 'state'}\n"
                           "schedule: {score_every: 2s, refit_every: 24h, fit_workers: 1}\n"
                           "targets: [{name: latency, query: latency_seconds, history: 5d, model: stl}]\n")  # fmt: skip

    def info_versions(port: int):
        families = _metrics(port)
        return {s.labels["service"]: s.labels["version"] for s in families["perfsentinel_baseline_info"].samples}

    def fits(port: int) -> float:
        return sum(s.value for s in _metrics(port)["perfsentinel_fits"].samples if s.name.endswith("_total"))

    for run in ("first", "restart"):
        port = free_port()
        service = _service(config_path, port)
        try:
            versions = _wait(lambda port=port: len(info_versions(port)) == 2 and info_versions(port), 120)
            assert versions == {"s0": "1", "s1": "1"}
            if run == "restart":
                assert fits(port) == 0  # scored from the store; no series was due for a refit yet
                ages = {
                    s.labels["service"]: s.value for s in _metrics(port)["perfsentinel_baseline_age_seconds"].samples
                }
                assert all(age > 0 for age in ages.values())
            else:
                assert fits(port) == 2
        finally:
            service.send_signal(signal.SIGTERM)
            assert service.wait(timeout=60) == 0
