"""Process hygiene of the real `perfsentinel run` service in the middle of a refit (issue 26.10): after kill -9 no fit
worker outlives it, and SIGTERM (or Ctrl-C on the process group) stops it with exit 0 and no ERROR or traceback.

The service reads a real Prometheus with enough series that an MSTL refit keeps both fit workers busy for several
seconds. Processes are found through /proc (psutil is not a dependency)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from analyzer.prometheus.localprom import BackfillSeries, LocalPrometheus, free_port, wait_http
from analyzer.synthetic import generate
from tests.conftest import require_tools
from tests.procs import alive, cpu_ticks, descendants, fit_workers, wait_for

pytestmark = pytest.mark.integration
SERIES = 48  # 48 MSTL fits of 21 days: several seconds per worker
DAYS = 21


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    require_tools("prometheus", "promtool")
    end = np.floor(time.time() / 300) * 300
    history = []
    for number in range(SERIES):
        series = generate(days=DAYS, seed=number, end=end)
        history.append(BackfillSeries("slow_fit_seconds", {"instance": f"i{number}"}, series.timestamps,
                                      series.values))  # fmt: skip
    local = LocalPrometheus(tmp_path_factory.mktemp("prometheus"))
    local.backfill(history)
    with local:
        yield local


def write_config(path: Path, url: str) -> Path:
    path.write_text(f"""
prometheus:
  url: {url}
schedule:
  fit_workers: 2
targets:
  - name: slow
    query: slow_fit_seconds
    model: mstl
    history: {DAYS}d
""")
    return path


# ---------------------------------------------------------------- the service in a refit
class Service:
    def __init__(self, prometheus: LocalPrometheus, tmp_path: Path) -> None:
        config = write_config(tmp_path / "config.yml", prometheus.url)
        self.port = free_port()
        self.stderr_path = tmp_path / "stderr.log"
        with open(self.stderr_path, "w") as stderr:
            command = ["run", "--config", str(config), "--listen", f"127.0.0.1:{self.port}"]
            self.process = subprocess.Popen(
                [sys.executable, "-m", "analyzer", *command],
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True,  # its own process group
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def busy_workers(self) -> list[int]:
        """Waits until both fit workers exist and burn CPU (a refit is running); returns them."""
        wait_http(f"http://127.0.0.1:{self.port}/healthz", 60, self.process)
        workers = wait_for(lambda: len(fit_workers(self.process.pid)[1]) >= 2 and fit_workers(self.process.pid)[1],
                           120)  # fmt: skip
        assert workers, f"no fit workers appeared\n{self.stderr}"
        before = {pid: cpu_ticks(pid) for pid in workers}
        assert wait_for(lambda: all(cpu_ticks(pid) > before[pid] for pid in workers), 30), "the workers are idle"
        assert self.process.poll() is None, self.stderr
        return workers

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def service(prometheus: LocalPrometheus, tmp_path: Path) -> Iterator[Service]:
    running = Service(prometheus, tmp_path)
    yield running
    running.close()


def test_no_fit_worker_outlives_a_kill_9_of_the_service(service: Service) -> None:
    workers = service.busy_workers()
    family = descendants(service.process.pid)  # fork server, workers, resource tracker
    assert set(workers) <= set(family)
    service.process.kill()
    service.process.wait()
    started = time.monotonic()
    left = wait_for(lambda: not [pid for pid in family if alive(pid)], 10)
    survivors = [pid for pid in family if alive(pid)]
    for pid in survivors:  # do not leave them behind for the other tests
        os.kill(pid, signal.SIGKILL)
    assert left, f"still running 10 s after kill -9 of the service: {survivors}"
    print(f"every process gone {time.monotonic() - started:.2f}s after kill -9")  # shown with pytest -s
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("how", ["SIGTERM to the service", "Ctrl-C (SIGINT to the process group)"])
def test_a_stop_during_a_refit_exits_0_without_an_error(service: Service, how: str) -> None:
    workers = service.busy_workers()
    family = descendants(service.process.pid)
    stopping = time.monotonic()
    if how.startswith("SIGTERM"):
        service.process.send_signal(signal.SIGTERM)
    else:
        os.killpg(service.process.pid, signal.SIGINT)
    assert service.process.wait(timeout=30) == 0, service.stderr
    took = time.monotonic() - stopping
    assert "ERROR" not in service.stderr and "Traceback" not in service.stderr, service.stderr
    assert wait_for(lambda: not [pid for pid in family if alive(pid)], 10), "a process outlived the stop"
    print(f"stopped in {took:.2f}s")  # shown with pytest -s
    assert set(workers) <= set(family) and took < 15, took
