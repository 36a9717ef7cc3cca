"""Each target's history is kept between passes (analyzer.service.history): reads ask only for what is new, a gap
longer than the window reads it whole, and with state_dir a restart reads only what came since the last save."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.models.fitting import FitPool
from analyzer.series import grid
from analyzer.service.history import OVERLAP_STEPS, TargetHistory, load_history, save_history
from analyzer.service.pipeline import Analyzer
from analyzer.synthetic import generate
from tests.generated import GeneratedReader, one_target_config

STEP = 300.0
END = 1_767_571_200.0


def counting_reader(count: int, until: float) -> GeneratedReader:
    """Generated series up to ``until``, served on the requested grid; the reader counts the points it returns."""
    return GeneratedReader(
        [generate(days=12, step=STEP, level=0.2 + 0.01 * i, seed=i, end=until) for i in range(count)]
    )


def config(state_dir: str | None = None):
    return one_target_config("7d", state_dir)


def values_of(history: TargetHistory) -> dict[str, np.ndarray]:
    return {key: history.values(row) for row, _, key in history.rows()}


def test_reads_ask_only_for_new_slots_plus_an_overlap_and_a_long_gap_reads_the_window():
    history = TargetHistory(STEP, 86400.0, 10)
    assert history.plan(END).full
    history.begin(history.plan(END))
    later = history.plan(END + 3 * STEP)
    assert not later.full and later.start == END - OVERLAP_STEPS * STEP and later.end == END + 3 * STEP
    history.begin(later)
    assert history.plan(END + 2 * 86400.0).full  # a gap longer than the window
    assert history.plan(END).full  # a clock that went back


def test_the_ring_keeps_exactly_the_window_and_clears_what_a_read_replaces():
    history = TargetHistory(STEP, 10 * STEP, 10)
    history.begin(history.plan(END))
    times = grid(END - 10 * STEP, END, STEP)
    history.add({"a": "1"}, times, times / STEP)
    plan = history.plan(END + 2 * STEP)
    history.begin(plan)
    fresh = grid(plan.start, plan.end, STEP)[:-1]  # the newest slot is not answered this time
    history.add({"a": "1"}, fresh, -fresh / STEP)
    (values,) = values_of(history).values()
    window = history.timestamps()
    assert window[0] == END - 8 * STEP and window[-1] == END + 2 * STEP
    expected = np.where(window < plan.start, window / STEP, -window / STEP)
    expected[-1] = np.nan  # cleared, not the old value of that ring column
    np.testing.assert_allclose(values, expected.astype(np.float32), equal_nan=True)


def test_a_saved_history_loads_as_it_was(tmp_path):
    history = TargetHistory(STEP, 86400.0, 600)
    history.begin(history.plan(END))
    times = grid(END - 86400.0, END, STEP)
    for i in range(300):  # more than one block of rows
        history.add({"__name__": "m", "pod": f"p{i}"}, times, np.sin(times / 1e4 + i))
    save_history(history, tmp_path / "lat")
    again = load_history(tmp_path / "lat", STEP, 86400.0, 600)
    assert again.end_slot == history.end_slot and again.names == {"m"}
    assert values_of(again).keys() == values_of(history).keys()
    for key, values in values_of(history).items():
        np.testing.assert_array_equal(values_of(again)[key], values)
    assert load_history(tmp_path / "lat", 60.0, 86400.0, 600) is None  # another step: read the window again
    (tmp_path / "lat").write_bytes((tmp_path / "lat").read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated"):
        load_history(tmp_path / "lat", STEP, 86400.0, 600)


def run(analyzer: Analyzer, now: float) -> list:
    analyzer.refit(now)
    return analyzer.score(now).results


def test_in_steady_state_a_score_reads_the_new_samples_and_a_refit_reads_nothing_more():
    reader = counting_reader(5, END + 3600)
    pool = FitPool(1)
    analyzer = Analyzer(config(), reader, pool=pool, clock=lambda: END)
    run(analyzer, END)
    first = reader.points_read
    reader.points_read = 0
    for minute in range(1, 61):  # an hour: a score every minute, the refit pass every 15 minutes
        now = END + 60 * minute
        if minute % 15 == 0:
            analyzer.refit(now)
        analyzer.score(now)
    per_series_hour = reader.points_read / 5
    assert first / 5 == 7 * 288 + 1 + OVERLAP_STEPS + 1  # the window once (refit), then the score's overlap
    # 60 scores: each the newest slot and OVERLAP_STEPS before it; the 4 refit passes add as little
    assert per_series_hour <= 64 * (OVERLAP_STEPS + 2)
    assert all(end - start <= (OVERLAP_STEPS + 1) * STEP for start, end in reader.ranges[2:])


def test_a_restart_with_state_dir_reads_only_what_came_since_and_scores_the_same(tmp_path):
    later = END + 1800
    reader = counting_reader(4, later)
    kept = Analyzer(config(str(tmp_path / "kept")), reader, pool=FitPool(1), clock=lambda: END)
    run(kept, END)
    kept.save_records()  # what the service does at shutdown
    never_stopped = [(r.labels["service"], r.value, r.anomaly_score) for r in run(kept, later)]
    reader.points_read = 0
    restarted = Analyzer(config(str(tmp_path / "kept")), reader, pool=FitPool(1), clock=lambda: later)
    results = run(restarted, later)
    assert reader.points_read <= 4 * (1800 / STEP + OVERLAP_STEPS + 2)
    assert [(r.labels["service"], r.value, r.anomaly_score) for r in results] == never_stopped


def test_an_unreadable_saved_history_is_counted_and_the_window_read_again(tmp_path):
    class Errors:
        def __init__(self):
            self.operations = []

        def store_error(self, operation):
            self.operations.append(operation)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    (tmp_path / "history").mkdir()
    (tmp_path / "history" / "lat").write_bytes(b"not a history file")
    telemetry = Errors()
    reader = counting_reader(2, END)
    analyzer = Analyzer(config(str(tmp_path)), reader, telemetry, pool=FitPool(1), clock=lambda: END)
    assert telemetry.operations == ["history"]
    assert all(r.status == "ok" for r in run(analyzer, END))
