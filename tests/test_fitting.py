"""The fit pool: failures and time-outs are reported per series and never stop the batch."""

import time

import numpy as np

from analyzer.models import FitContext, fitting
from analyzer.models.fitting import FitPool, FitRequest, fit_one
from analyzer.synthetic import generate


class Recorder:
    def __init__(self):
        self.fits, self.fallbacks = [], []

    def fit_finished(self, model, outcome, seconds):
        self.fits.append((model, outcome))

    def fallback(self, from_model, to_model):
        self.fallbacks.append((from_model, to_model))


def request(key: str, values: np.ndarray | None = None, model: str = "stl") -> FitRequest:
    series = generate(days=8, seed=1)
    return FitRequest(key, model, series.timestamps, series.values if values is None else values, FitContext(300))


def test_process_pool_fits_every_series_and_reports_a_bad_one():
    good = [request(str(i)) for i in range(4)]
    bad = request("bad", np.full(len(good[0].values), np.nan))
    telemetry = Recorder()
    pool = FitPool(workers=2)
    try:
        outcomes = {o.key: o for o in pool.fit_all([*good, bad], 60, telemetry)}
    finally:
        pool.close()
    assert all(outcomes[str(i)].baseline is not None for i in range(4))
    assert outcomes["bad"].baseline is None and "fewer than 10" in outcomes["bad"].error
    assert telemetry.fits.count(("stl", "success")) == 4


def slow_fit(req):
    if req.key == "slow":
        time.sleep(30)
    return fit_one(req)


def test_a_slow_fit_times_out_without_blocking_the_others(monkeypatch):
    monkeypatch.setattr(fitting, "fit_one", slow_fit)
    pool = FitPool(workers=2)
    list(pool.fit_all([request("warm-up-1"), request("warm-up-2")], 120, Recorder()))  # worker start-up
    started = time.monotonic()
    try:
        outcomes = {o.key: o for o in pool.fit_all([request("slow"), request("a"), request("b")], 3, Recorder())}
    finally:
        pool.close(kill=True)
    assert time.monotonic() - started < 20
    assert outcomes["a"].baseline is not None and outcomes["b"].baseline is not None, outcomes["a"].error
    assert outcomes["slow"].baseline is None and outcomes["slow"].error.startswith("timeout")
