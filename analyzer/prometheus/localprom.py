"""A throw-away local Prometheus with backfilled history, for the demo and the integration tests.

Backfill follows what was measured on these machines: OpenMetrics input ending in ``# EOF``, timestamps in
seconds, samples sorted by time within each series, one file per day (promtool rereads the whole file once
per 2-hour block), blocks created before Prometheus starts, and a retention longer than the history.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests

DAY = 86400


@dataclass
class BackfillSeries:
    name: str
    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray
    type: str = "gauge"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _labels_text(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    body = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + body + "}"


def write_openmetrics(series: Sequence[BackfillSeries], directory: Path) -> list[Path]:
    """One OpenMetrics file per UTC day; NaN samples are left out (they are gaps, not values)."""
    directory.mkdir(parents=True, exist_ok=True)
    days = sorted({int(t // DAY) for s in series for t in s.timestamps})
    files = []
    for day in days:
        lines: list[str] = []
        for name in dict.fromkeys(s.name for s in series):
            family = [s for s in series if s.name == name]
            lines.append(f"# TYPE {name} {family[0].type}")
            for item in family:
                labels = _labels_text(item.labels)
                in_day = (item.timestamps // DAY == day) & np.isfinite(item.values)
                pairs = zip(item.timestamps[in_day].tolist(), item.values[in_day].tolist(), strict=True)
                lines.extend(f"{name}{labels} {v!r} {int(t)}" for t, v in pairs)
        path = directory / f"day-{day}.om"
        path.write_text("\n".join(lines) + "\n# EOF\n")
        files.append(path)
    return files


def require_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"{name} not found: install it with 'apt-get install -y --no-install-recommends prometheus "
            "prometheus-alertmanager'"
        )
    return path


def backfill(files: Iterable[Path], data_dir: Path) -> None:
    """Create TSDB blocks, one promtool per file, as many at once as there are cores."""
    promtool = require_binary("promtool")
    data_dir.mkdir(parents=True, exist_ok=True)

    def create(path: Path) -> None:
        done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(path), str(data_dir)],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"promtool failed on {path}: {done.stderr.strip() or done.stdout.strip()}")

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as threads:
        list(threads.map(create, files))


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:g}s")


class LocalPrometheus:
    """Prometheus on 127.0.0.1 with a free port; use as a context manager."""

    def __init__(self, workdir: Path | None = None, config_text: str = "global:\n  scrape_interval: 15s\n",
                 retention: str = "400d", extra_args: Sequence[str] = ()) -> None:  # fmt: skip
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="perfsentinel-prom-"))
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "prometheus.yml"
        self.config_text = config_text
        self.retention = retention
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backfill(self, series: Sequence[BackfillSeries]) -> None:
        backfill(write_openmetrics(series, self.workdir / "openmetrics"), self.data_dir)

    def start(self, timeout: float = 60) -> LocalPrometheus:
        self.config_path.write_text(self.config_text)
        log = open(self.workdir / "prometheus.log", "w")  # noqa: SIM115 (lives as long as the process)
        self.process = subprocess.Popen(
            [require_binary("prometheus"), f"--config.file={self.config_path}",
             f"--storage.tsdb.path={self.data_dir}", f"--storage.tsdb.retention.time={self.retention}",
             f"--web.listen-address=127.0.0.1:{self.port}", f"--web.external-url={self.url}",
             "--web.enable-lifecycle", *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_http(f"{self.url}/-/ready", timeout, self.process)
        return self

    def reload(self) -> None:
        requests.post(f"{self.url}/-/reload", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
