"""The fit pool: failures and time-outs are reported per series and never stop the batch; a batch ends when the pool
is closed from another thread; workers never outlive the process that started them."""

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from analyzer.models import FitContext, fitting
from analyzer.models.fitting import FitPool, FitRequest, fit_one
from analyzer.synthetic import generate
from tests.conftest import REPO
from tests.procs import alive, descendants, fit_workers, wait_for


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


def sleeping_fit(req):
    time.sleep(60)
    return fit_one(req)


def test_close_from_another_thread_ends_the_running_batch_without_errors(monkeypatch, caplog):
    monkeypatch.setattr(fitting, "fit_one", sleeping_fit)
    pool = FitPool(workers=2)
    telemetry = Recorder()
    threading.Timer(3.0, pool.shutdown).start()  # the service's SIGTERM, while both workers are busy
    started = time.monotonic()
    outcomes = list(pool.fit_all([request(str(i)) for i in range(4)], 120, telemetry))
    assert time.monotonic() - started < 15
    assert outcomes == [] and telemetry.fits == []  # the fits not done are not reported as failures
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert list(pool.fit_all([request("after")], 120, telemetry)) == []  # shut down: no new workers either


def test_fit_workers_exit_when_their_parent_is_killed(tmp_path):
    """A process with a busy pool is killed with SIGKILL: its workers (the fork server's children) go too."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\n"
        "from analyzer.models import fitting\n"
        "from tests import test_fitting\n"
        "fitting.fit_one = test_fitting.sleeping_fit\n"
        "pool = fitting.FitPool(workers=2)\n"
        "for outcome in pool.fit_all([test_fitting.request(str(i)) for i in range(4)], 600, test_fitting.Recorder()):\n"
        "    pass\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        assert wait_for(lambda: len(fit_workers(parent.pid)[1]) == 2, 60)
        family = descendants(parent.pid)  # the fork server, both workers, the resource tracker
    finally:
        parent.kill()
        parent.wait()
    gone = wait_for(lambda: not [pid for pid in family if alive(pid)], 10)
    for pid in [pid for pid in family if alive(pid)]:
        os.kill(pid, signal.SIGKILL)
    assert gone, "a fit worker outlived its parent"
