"""The baseline lifecycle on generated data with a known regression: flagged periods stay out of training, so a
sustained regression stays flagged across many refits until accepted; strategies decide about replacements.

The pipeline reads from ``GeneratedReader``, an in-memory source serving generated series on Prometheus'
query_range grid (the reader itself is tested against a real Prometheus elsewhere); the restart test in
tests/test_store.py uses a real Prometheus.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from analyzer.config import build_config
from analyzer.series import Series, grid
from analyzer.service.pipeline import Analyzer
from analyzer.state.lifecycle import (
    MERGE_GAP,
    REFIT_SLICES,
    Evidence,
    Lifecycle,
    decide,
    flagged_runs,
    mask,
    merge_flags,
)
from analyzer.state.store import BaselineStore, Flag
from analyzer.synthetic import generate, inject_step

DAY = 86400.0
STEP = 600.0
START = 1_767_571_200.0  # the regression / improvement starts here (a Monday 00:00 UTC)


class GeneratedReader:
    """Serves generated series (labels -> values on a regular grid) like PrometheusReader.query_range."""

    def __init__(self, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.series = series
        self.cancelled = threading.Event()  # as PrometheusReader: set on shutdown

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        times = grid(start, end, step)
        out = []
        for service, (timestamps, values) in self.series.items():
            picked = np.interp(times, timestamps, values, left=np.nan, right=np.nan)
            picked[(times < timestamps[0]) | (times > timestamps[-1])] = np.nan
            out.append(Series({"service": service}, times, picked))
        return out

    def read_matrix(self, query: str, start: float, end: float, step: float, sink, **limits) -> int:
        found = self.query_range(query, start, end, step)
        for series in found:
            sink(series.labels, series.timestamps, series.values)
        return len(found)


def config(strategy: str, state_dir: str | None = None, direction: str = "lower_is_better", **extra):
    raw = {
        "prometheus": {"url": "http://127.0.0.1:1"},
        "schedule": {"refit_every": "3h"},
        "targets": [{"name": "latency", "query": "q", "direction": direction, "step": "10m", "history": "14d",
                     "update_strategy": strategy, "model": "stl", **extra}],
    }  # fmt: skip
    if state_dir:
        raw["state_dir"] = state_dir
    return build_config(raw, env={})


def regressed(size: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """14 days of normal latency, then a sustained change of ``size`` (0.5 = +50%) for 5 days."""
    series = generate(days=19, step=STEP, level=0.2, noise=0.03, weekend_dip=0.0, seed=3, end=START + 5 * DAY)
    inject_step(series, START, size)
    return {"checkout": (series.timestamps, series.values)}


def normal_level(timestamp: float) -> float:
    """The generated signal without noise or regression at ``timestamp``."""
    series = generate(days=19, step=STEP, level=0.2, noise=0.03, weekend_dip=0.0, seed=3, end=START + 5 * DAY)
    return float(np.interp(timestamp, series.timestamps, series.clean))


def score_at(analyzer: Analyzer, now: float):
    (result,) = analyzer.score(now).results
    return result


def run_refits(analyzer: Analyzer, times: np.ndarray) -> list:
    results = []
    for now in times:
        analyzer.refit(now)
        results.append(score_at(analyzer, now))
    return results


@pytest.mark.parametrize("strategy", ["manual", "adaptive"])
def test_sustained_regression_stays_flagged_across_refits_until_accepted(tmp_path, strategy):
    cfg = config(strategy, str(tmp_path))
    analyzer = Analyzer(cfg, GeneratedReader(regressed(0.5)))
    analyzer.refit(START)  # the initial baseline, before the regression
    # 3 days of refits every 3 hours (24 refits) while the regression goes on
    results = run_refits(analyzer, START + 3 * 3600.0 * np.arange(1, 25))
    assert all(r.anomaly_score > 1.0 for r in results), [round(r.anomaly_score, 2) for r in results]
    assert all(r.expected == pytest.approx(normal_level(r.timestamp), rel=0.1) for r in results)

    store = BaselineStore.in_dir(tmp_path)
    store.request("latency", '{service="checkout"}', "accept", "new release is slower, by design", START + 3 * DAY)
    later = run_refits(analyzer, START + 3 * DAY + 3 * 3600.0 * np.arange(1, 9))
    assert all(r.anomaly_score <= 1.0 for r in later), [round(r.anomaly_score, 2) for r in later]
    assert later[0].baseline_reason == "accepted"
    flags = store.flags("latency", '{service="checkout"}')
    accepted = [f for f in flags if f.accepted_at is not None]
    assert accepted and accepted[0].start <= START + 3600 and accepted[0].end >= START + 2.9 * DAY
    assert accepted[0].note == "new release is slower, by design"
    assert all(f.start >= accepted[0].end for f in flags if f.accepted_at is None)


def test_without_masking_the_same_regression_would_be_absorbed():
    """The control for the test above: a refit on unmasked data learns the regression within 3 days."""
    data = regressed(0.5)
    analyzer = Analyzer(config("adaptive"), GeneratedReader(data))
    now = START + 3 * DAY
    from analyzer.models import FitContext, get_model

    (series,) = analyzer.reader.query_range("q", now - 14 * DAY, now, STEP)
    naive = get_model("stl").fit(series.timestamps, series.values, FitContext(STEP))
    latest = np.flatnonzero(np.isfinite(series.values))[-1]
    band = naive.predict(series.timestamps[latest : latest + 1])
    assert series.values[latest] <= band.upper[0]


def test_regression_recovery_clears_without_accept():
    data = regressed(0.5)
    timestamps, values = data["checkout"]
    clean = generate(days=19, step=STEP, level=0.2, noise=0.03, weekend_dip=0.0, seed=3, end=START + 5 * DAY).values
    recovered = np.where(timestamps >= START + DAY, clean, values)  # the regression lasts one day
    analyzer = Analyzer(config("adaptive"), GeneratedReader({"checkout": (timestamps, recovered)}))
    analyzer.refit(START)
    during = run_refits(analyzer, START + 3 * 3600.0 * np.arange(1, 8))
    after = run_refits(analyzer, START + DAY + 3 * 3600.0 * np.arange(1, 9))
    assert all(r.anomaly_score > 1.0 for r in during)
    assert all(r.anomaly_score <= 1.0 for r in after)


def test_on_improvement_adopts_an_improvement_and_judges_later_regressions_against_it(tmp_path):
    analyzer = Analyzer(config("on_improvement", str(tmp_path)), GeneratedReader(regressed(-0.4)))
    analyzer.refit(START)
    first = score_at(analyzer, START)
    results = run_refits(analyzer, START + 3 * 3600.0 * np.arange(1, 9))
    assert first.baseline_version == 1
    adopted = [r for r in results if r.baseline_reason == "improvement"]
    assert adopted, [(r.baseline_version, r.baseline_reason) for r in results]
    final = results[-1]
    assert final.expected == pytest.approx(final.value, rel=0.15)  # the baseline sits at the improved level
    assert final.expected < 0.8 * first.expected


def test_manual_keeps_the_first_baseline_even_for_an_improvement(tmp_path):
    analyzer = Analyzer(config("manual", str(tmp_path)), GeneratedReader(regressed(-0.4)))
    analyzer.refit(START)
    results = run_refits(analyzer, START + 3 * 3600.0 * np.arange(1, 9))
    assert {r.baseline_version for r in results} == {1}


def test_time_based_replaces_a_stable_baseline_only_when_due():
    stable = {"checkout": (lambda s: (s.timestamps, s.values))(generate(days=19, step=STEP, end=START + 5 * DAY))}
    analyzer = Analyzer(config("time_based", update_every="1d"), GeneratedReader(stable))
    analyzer.refit(START)
    results = run_refits(analyzer, START + 3 * 3600.0 * np.arange(1, 13))
    versions = [r.baseline_version for r in results]
    assert versions[:7] == [1] * 7  # younger than a day: kept
    assert versions[-1] == 2


# ---------------------------------------------------------------- unit rules
@pytest.mark.parametrize(
    ("strategy", "evidence", "action", "pinned", "adopt"),
    [
        ("manual", Evidence(candidate_error=0.1, current_error=1.0), None, False, False),
        ("manual", Evidence(open_flag=True), "accept", False, True),
        ("adaptive", Evidence(candidate_error=0.1, current_error=1.0), None, False, True),
        ("adaptive", Evidence(candidate_error=0.1, current_error=1.0, open_flag=True), None, False, False),
        ("adaptive", Evidence(candidate_error=0.1, current_error=1.0, recent_flagged=True), None, False, False),
        ("adaptive", Evidence(candidate_error=2.0, current_error=1.0), None, False, False),
        ("time_based", Evidence(age=8 * DAY), None, False, True),
        ("time_based", Evidence(age=8 * DAY, open_flag=True), None, False, False),
        ("time_based", Evidence(age=DAY), None, False, False),
        ("on_improvement", Evidence(improved=True, candidate_error=0.1, current_error=1.0), None, False, True),
        ("on_improvement", Evidence(candidate_error=0.1, current_error=1.0), None, False, False),
        ("on_drift", Evidence(drifted=True, candidate_error=0.1, current_error=1.0), None, False, False),
        ("on_drift", Evidence(drifted=True), "accept", False, True),
        ("on_drift", Evidence(candidate_error=0.1, current_error=1.0), None, False, True),
        ("adaptive", Evidence(candidate_error=0.1, current_error=1.0), "accept", True, False),
        ("manual", Evidence(), "reset", True, True),
    ],
)
def test_decide(strategy, evidence, action, pinned, adopt):
    assert decide(strategy, evidence, 7 * DAY, action, pinned).adopt is adopt


def test_flags_merge_over_short_gaps_and_mask_only_unaccepted_periods():
    times = 1000.0 + 300.0 * np.arange(100)
    flagged = np.zeros(100, bool)
    flagged[10:20] = flagged[25:30] = flagged[60:62] = True  # 25 is 30 min after 19: one period
    runs = merge_flags(flagged_runs(times, flagged, 300.0), MERGE_GAP)
    assert [(r.start, r.end) for r in runs] == [(times[10], times[29]), (times[60], times[61])]
    runs[1].accepted_at = 5.0
    masked = mask(times, np.ones(100), runs)
    assert np.isnan(masked[10:30]).all() and np.isfinite(masked[60:62]).all()
    assert np.isfinite(masked[:10]).all() and np.isfinite(masked[30:60]).all()


def test_refits_are_spread_over_the_interval():
    lifecycle = Lifecycle()
    keys = [f'{{pod="{i}"}}' for i in range(400)]
    every = 3600.0
    for key in keys:
        lifecycle._mem("t", key).last_attempt = 0.0
    fitted_per_pass = []
    for step in range(1, REFIT_SLICES + 1):
        now = step * every / REFIT_SLICES
        due = [k for k in keys if lifecycle.due("t", k, True, now, every)]
        for key in due:
            lifecycle._mem("t", key).last_attempt = now
        fitted_per_pass.append(len(due))
    assert sum(fitted_per_pass) == len(keys)  # each series once per interval
    assert max(fitted_per_pass) < 0.35 * len(keys)  # about a quarter per pass, not all at once


def test_accepted_flag_is_not_reflagged_by_a_regression_verdict():
    lifecycle = Lifecycle()
    lifecycle._mem("t", "k").flags = [Flag(100.0, 200.0, "anomaly", accepted_at=300.0)]
    lifecycle.note_regression("t", "k", 120.0, 180.0)
    assert lifecycle._mem("t", "k").flags == [Flag(100.0, 200.0, "anomaly", accepted_at=300.0)]
    lifecycle.note_regression("t", "k", 150.0, 250.0)  # only the part after the accepted period is new
    assert [(f.start, f.end) for f in lifecycle._mem("t", "k").flags][1] == (pytest.approx(200.0, abs=0.01), 250.0)
    lifecycle.note_regression("t", "k", 9000.0, 9500.0)  # beyond MERGE_GAP: a new period
    assert [f.kind for f in lifecycle._mem("t", "k").flags] == ["anomaly", "regression", "regression"]


def test_model_auto_is_chosen_once_per_target_and_used_for_its_series():
    stepped = generate(days=12, step=STEP, level=0.2, noise=0.03, weekend_dip=0.0, seed=4, end=START)
    inject_step(stepped, START - 3.5 * DAY, 0.6)  # the profile would keep the old level: STL wins the holdout
    analyzer = Analyzer(config("adaptive", model="auto"), GeneratedReader({"a": (stepped.timestamps, stepped.values)}))
    analyzer.refit(START)
    chosen, at = analyzer._auto_models["latency"]
    assert chosen == "stl" and at == START
    assert score_at(analyzer, START).model == "stl"
    analyzer.refit(START + 3 * 3600.0)
    assert analyzer._auto_models["latency"] == ("stl", START)  # re-checked daily, not at every pass


def test_reset_refits_from_scratch_on_unmasked_data(tmp_path):
    analyzer = Analyzer(config("manual", str(tmp_path)), GeneratedReader(regressed(0.5)))
    analyzer.refit(START)
    run_refits(analyzer, START + 3 * 3600.0 * np.arange(1, 9))  # one day of regression, flagged
    store = BaselineStore.in_dir(tmp_path)
    assert store.flags("latency", '{service="checkout"}')
    store.reset("latency", '{service="checkout"}')
    assert (
        store.flags("latency", '{service="checkout"}') == [] and store.versions("latency", '{service="checkout"}') == []
    )
    analyzer.refit(START + DAY + 3 * 3600.0)
    (version,) = store.versions("latency", '{service="checkout"}')
    assert (version.version, version.reason) == (1, "reset")
    assert version.trained_to >= START + DAY  # the regressed day was not masked out of this fit
