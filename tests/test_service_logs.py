"""What ``perfsentinel run`` logs (issue 30.5): one line per run with its figures, APScheduler's chatter only at
DEBUG, and ``--log-format json``. The real service against a real Prometheus with a target still warming up."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from analyzer.commands.logs import JsonFormatter
from analyzer.prometheus.localprom import BackfillSeries, free_port, wait_http
from analyzer.service.runlog import SchedulerChatter
from analyzer.synthetic import generate
from tests.procs import killed_if_left, stop_cleanly, wait_for

pytestmark = pytest.mark.integration
STEP = 300.0


def history(end: float) -> list[BackfillSeries]:
    found = []
    for number, service in enumerate(("checkout", "search")):
        series = generate(days=3, seed=number, end=end)
        found.append(BackfillSeries("latency_seconds", {"service": service}, series.timestamps, series.values))
    fresh = generate(days=1, seed=7, end=end)  # a day of history: warming up until it has min_history (2d)
    found.append(BackfillSeries("fresh_seconds", {"service": "new"}, fresh.timestamps, fresh.values))
    return found


def write_config(path: Path, url: str) -> Path:
    path.write_text(f"""
prometheus: {{url: "{url}", retries: 0, timeout: 5s}}
schedule: {{score_every: 1s, refit_every: 1h, fit_workers: 1}}
targets:
  - {{name: latency, query: latency_seconds, model: profile}}
  - {{name: fresh, query: fresh_seconds, model: profile}}
""")
    return path


def score_runs(metrics_url: str) -> float:
    text = requests.get(metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('perfsentinel_runs_total{') and 'task="score"' in line
               and 'outcome="success"' in line)  # fmt: skip


def test_one_json_line_per_run_with_its_figures_and_no_scheduler_chatter(start_prometheus, tmp_path: Path) -> None:
    end = np.floor(time.time() / STEP) * STEP
    prometheus = start_prometheus(history(end))
    config = write_config(tmp_path / "config.yml", prometheus.url)
    port = free_port()
    log = tmp_path / "service.log"
    with open(log, "w") as output:
        service = subprocess.Popen([sys.executable, "-m", "analyzer", "--log-format", "json", "run", "--config",
                                    str(config), "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                                   stderr=output)  # fmt: skip
    with killed_if_left(service):
        wait_http(f"http://127.0.0.1:{port}/healthz", 60, service)
        assert wait_for(lambda: score_runs(f"http://127.0.0.1:{port}/metrics") >= 4, 120, 0.5), log.read_text()
        stop_cleanly(service)
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    chatter = [line["message"] for line in lines if "Running job" in line["message"] or
               "executed successfully" in line["message"] or "Added job" in line["message"]]  # fmt: skip
    assert chatter == []

    refits = [line for line in lines if line.get("job") == "refit"]
    scores = [line for line in lines if line.get("job") == "score"]
    assert len(refits) == 1 and len(scores) >= 4
    refit = refits[0]
    assert refit["level"] == "INFO" and refit["outcome"] == "success"
    assert {k: refit[k] for k in ("series", "with_baseline", "warming_up", "without_baseline", "fits",
                                  "fits_failed", "targets", "targets_failed")} == {
        "series": 3, "with_baseline": 2, "warming_up": 1, "without_baseline": 0, "fits": 2, "fits_failed": 0,
        "targets": 2, "targets_failed": 0}  # fmt: skip
    assert refit["message"].startswith("refit run: 3 series (2 with a baseline, 1 warming up, 0 without), 2 fits")
    for score in scores:
        assert score["level"] == "INFO" and score["duration_seconds"] >= 0
        assert {k: score[k] for k in ("series", "ok", "insufficient_data", "error", "targets_failed")} == {
            "series": 3, "ok": 2, "insufficient_data": 1, "error": 0, "targets_failed": 0}  # fmt: skip
        assert score["message"].startswith("score run: 3 series (2 ok, 1 insufficient_data, 0 error), ")
    # the first run sees the two scored series' latest samples; the next ones, within the same 5 minutes, none
    assert scores[0]["new_samples"] == 2
    assert all(score["new_samples"] == 0 for score in scores[1:] if score["time"][:15] == scores[0]["time"][:15])
    per_run = [line for line in lines if line["level"] == "INFO" and "job" not in line]
    assert len(per_run) <= 6, per_run  # the start, the warm-up note, the stop: not one per run


def test_scheduler_chatter_is_debug() -> None:
    chatter = SchedulerChatter()
    logger = logging.getLogger("apscheduler.executors.default")
    info = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "Running job %s", ("score",), None)
    warning = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "Run time of job was missed", (), None)
    previous = logger.level
    try:
        logger.setLevel(logging.INFO)
        assert chatter.filter(info) is False and info.levelname == "DEBUG"
        assert chatter.filter(warning) is True and warning.levelname == "WARNING"
        logger.setLevel(logging.DEBUG)
        again = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "Running job %s", ("score",), None)
        assert chatter.filter(again) is True and again.levelno == logging.DEBUG
    finally:
        logger.setLevel(previous)


def test_json_lines_carry_the_fields_and_the_traceback() -> None:
    formatter = JsonFormatter()
    fields = {"job": "score", "series": 3, "message": "not over the message"}
    record = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "score run: %d series", (3,), None,
                                               extra={"fields": fields})  # fmt: skip
    entry = json.loads(formatter.format(record))
    assert entry["message"] == "score run: 3 series" and entry["job"] == "score" and entry["series"] == 3
    assert entry["level"] == "INFO" and entry["logger"] == "x" and entry["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "run failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(formatter.format(failed))["exception"]
