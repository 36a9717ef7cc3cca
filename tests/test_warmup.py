"""The warm-up says when it ends (issue 30.4): a series younger than min_history exports
perfsentinel_scoring_start_timestamp_seconds (when its history reaches min_history), the others do not; every series
exports perfsentinel_series_info with a stable series_id. The real pipeline against a real Prometheus."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from analyzer.config import build_config
from analyzer.models.fitting import FitPool
from analyzer.prometheus.localprom import BackfillSeries
from analyzer.prometheus.reader import PrometheusReader
from analyzer.results import INSUFFICIENT_DATA, OK
from analyzer.service.pipeline import Analyzer
from analyzer.synthetic import generate
from exporter.server import render_snapshot

pytestmark = pytest.mark.integration
STEP = 300.0
DAY = 86400.0


def analyse(url: str, now: float):
    target = {"name": "latency", "query": "latency_seconds", "model": "profile"}
    config = build_config({"prometheus": {"url": url, "retries": 0}, "targets": [target]}, {})
    pool = FitPool(1)
    analyzer = Analyzer(config, PrometheusReader(config.prometheus), pool=pool, clock=lambda: now)
    try:
        analyzer.refit(now)
        return analyzer.score(now)
    finally:
        pool.close()
        getattr(analyzer, "close", lambda: None)()


def test_a_warming_series_says_when_it_will_be_scored(start_prometheus) -> None:
    end = np.floor(time.time() / STEP) * STEP
    old = generate(days=3, seed=1, end=end)
    young = generate(days=1, seed=2, end=end)  # a day and a step of history: warming up until 2 days
    prometheus = start_prometheus([
        BackfillSeries("latency_seconds", {"service": "old"}, old.timestamps, old.values),
        BackfillSeries("latency_seconds", {"service": "young"}, young.timestamps, young.values),
    ])  # fmt: skip
    snapshot = analyse(prometheus.url, end + 30)
    by_service = {result.labels["service"]: result for result in snapshot.results}
    assert (by_service["old"].status, by_service["old"].scoring_start) == (OK, None)
    warming = by_service["young"]
    assert (warming.status, warming.reason) == (INSUFFICIENT_DATA, "too_short")
    first = float(young.timestamps[0])
    # its history reaches 2 days when the grid's last sample is 2 days minus one step after its first one
    assert warming.scoring_start == pytest.approx(first + 2 * DAY - STEP)
    assert warming.history_seconds == pytest.approx(end - first + STEP)

    families = {f.name: f for f in text_string_to_metric_families(render_snapshot(snapshot).decode())}
    starts = families["perfsentinel_scoring_start_timestamp_seconds"].samples
    assert [(s.labels["service"], s.value) for s in starts] == [("young", warming.scoring_start)]
    info = {s.labels["service"]: s.labels for s in families["perfsentinel_series_info"].samples}
    assert set(info) == {"old", "young"}  # every series, whatever its status
    assert info["young"]["series_key"] == "service=young" and info["young"]["target"] == "latency"
    ids = {labels["series_id"] for labels in info.values()}
    assert len(ids) == 2 and all(len(i) == 12 and int(i, 16) >= 0 for i in ids)

    # the same series get the same ids at the next analysis (a dashboard link stays valid)
    again = {s.labels["service"]: s.labels["series_id"] for s in text_string_to_metric_families(
        render_snapshot(analyse(prometheus.url, end + 90)).decode()) if s.name == "perfsentinel_series_info"
        for s in s.samples}  # fmt: skip
    assert again == {service: labels["series_id"] for service, labels in info.items()}
