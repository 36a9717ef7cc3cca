"""Sharding: N replicas cover every series exactly once, evenly, stably; the StatefulSet ordinal sets the index."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from analyzer.commands import cli
from analyzer.config import build_config
from analyzer.models.fitting import FitPool
from analyzer.prometheus.localprom import BackfillSeries
from analyzer.prometheus.reader import PrometheusReader
from analyzer.series import series_key
from analyzer.service.pipeline import Analyzer
from analyzer.service.sharding import Shard, ordinal_from_hostname, resolve_shard, shard_of
from analyzer.synthetic import generate


def fleet(count: int) -> list[tuple[str, str]]:
    """(target, series key) pairs shaped like a real fleet: a few targets, many instances and routes."""
    targets = ("http_latency_p95", "http_requests", "error_ratio", "cpu")
    return [
        (targets[i % len(targets)],
         series_key({"job": f"svc-{i % 37}", "instance": f"10.0.{i // 250}.{i % 250}:8080", "route": f"/r{i % 11}"}))
        for i in range(count)
    ]  # fmt: skip


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 16])
def test_shards_cover_every_series_exactly_once(count: int) -> None:
    series = fleet(10_000)
    owners = [[i for i in range(count) if Shard(i, count).owns(t, k)] for t, k in series]
    assert all(len(o) == 1 for o in owners)


@pytest.mark.parametrize("count", [2, 3, 4, 8])
def test_shares_are_balanced_at_10k_series(count: int) -> None:
    series = fleet(10_000)
    sizes = Counter(shard_of(t, k, count) for t, k in series)
    fair = len(series) / count
    worst = max(abs(sizes[i] - fair) / fair for i in range(count))
    # a hash split is a uniform random split: at 10k series one shard's size has a relative spread of
    # sqrt((N-1)/10k), 2.6% at N=8; this fleet's worst shard is off by 6.2% (N=4 and N=8)
    assert worst < 0.07, f"shard sizes {sorted(sizes.values())} deviate {worst:.1%} from {fair:.0f}"
    assert chisquare([sizes[i] for i in range(count)]).pvalue > 0.001  # no sign of a biased hash


def test_assignment_is_stable_across_processes_and_label_order() -> None:
    """A restart (new process, new PYTHONHASHSEED) must not move any series to another shard."""
    series = fleet(200)
    here = [shard_of(t, k, 7) for t, k in series]
    code = ("import json, sys; from analyzer.service.sharding import shard_of;"
            "print(','.join(str(shard_of(t, k, 7)) for t, k in json.load(sys.stdin)))")  # fmt: skip
    root = Path(__file__).resolve().parent.parent
    env = {"PYTHONHASHSEED": "12345", "PATH": ""}
    there = subprocess.run([sys.executable, "-c", code], input=json.dumps(series), capture_output=True, text=True,
                           check=True, cwd=root, env=env).stdout.strip()  # fmt: skip
    assert [int(x) for x in there.split(",")] == here
    assert series_key({"b": "2", "a": "1"}) == series_key({"a": "1", "b": "2"})


def test_one_shard_owns_everything() -> None:
    assert all(Shard(0, 1).owns(t, k) for t, k in fleet(100))


@pytest.mark.parametrize(("index", "count"), [(-1, 2), (2, 2), (0, 0)])
def test_out_of_range_shard_is_refused(index: int, count: int) -> None:
    with pytest.raises(ValueError, match="shard index"):
        Shard(index, count)


@pytest.mark.parametrize(
    ("hostname", "ordinal"),
    [("perfsentinel-0", 0), ("perfsentinel-12", 12), ("my-release-perfsentinel-3.perfsentinel.ns.svc", 3)],
)
def test_ordinal_from_statefulset_hostname(hostname: str, ordinal: int) -> None:
    assert ordinal_from_hostname(hostname) == ordinal


@pytest.mark.parametrize("hostname", ["laptop", "perfsentinel-", "-3x"])
def test_hostname_without_ordinal_is_refused(hostname: str) -> None:
    with pytest.raises(ValueError, match="ordinal"):
        ordinal_from_hostname(hostname)


def test_resolution_order_flags_then_environment_then_hostname() -> None:
    env = {"PERFSENTINEL_SHARD_INDEX": "1", "PERFSENTINEL_SHARD_COUNT": "4"}
    assert resolve_shard(None, None, False, {}, "h") == Shard(0, 1)
    assert resolve_shard(None, None, False, env, "h") == Shard(1, 4)
    assert resolve_shard(2, 3, False, env, "h") == Shard(2, 3)
    assert resolve_shard(None, None, True, {"PERFSENTINEL_SHARD_COUNT": "4"}, "ps-3") == Shard(3, 4)
    with pytest.raises(ValueError, match="not both"):
        resolve_shard(1, 4, True, {}, "ps-3")
    with pytest.raises(ValueError, match="shard index must be in"):
        resolve_shard(None, 3, True, {}, "ps-3")  # a StatefulSet scaled past --shard-count
    with pytest.raises(ValueError, match="must be an integer"):
        resolve_shard(None, None, False, {"PERFSENTINEL_SHARD_COUNT": "four"}, "h")


def test_run_with_a_bad_shard_exits_2_before_serving(tmp_path: Path, monkeypatch, capsys) -> None:
    config = tmp_path / "c.yml"
    config.write_text("prometheus: {url: 'http://127.0.0.1:1'}\ntargets: [{name: t, query: up}]\n")
    monkeypatch.setattr(cli.socket, "gethostname", lambda: "laptop")
    code = cli.main(["run", "--config", str(config), "--shard-count", "3", "--shard-index-from-hostname"])
    assert code == cli.EXIT_USAGE
    assert "ordinal" in capsys.readouterr().err


@pytest.mark.integration
def test_three_analyzers_on_one_prometheus_report_each_series_once(start_prometheus) -> None:
    """Three shards against a real Prometheus: their published results partition the series."""
    end = np.floor(1_767_571_200.0 / 300) * 300
    series = []
    for i in range(24):
        data = generate(days=3, step=300, level=1.0 + i, seed=i, end=end)
        series.append(BackfillSeries("shard_test_latency", {"instance": f"host-{i}"}, data.timestamps, data.values))
    prometheus = start_prometheus(series)
    config = build_config({
        "prometheus": {"url": prometheus.url},
        "targets": [{"name": "lat", "query": "shard_test_latency", "history": "3d", "min_history": "1d",
                     "model": "profile"}],
    })  # fmt: skip
    seen: list[str] = []
    for index in range(3):
        analyzer = Analyzer(config, PrometheusReader(config.prometheus), pool=FitPool(1), shard=Shard(index, 3),
                            clock=lambda: end)  # fmt: skip
        analyzer.refit()
        snapshot = analyzer.score()
        assert snapshot.results, f"shard {index} got no series"
        seen += [r.labels["instance"] for r in snapshot.results]
    assert sorted(seen) == sorted(f"host-{i}" for i in range(24))


def analyse_with(config, shard: Shard, end: float) -> tuple[list, int]:
    reader = PrometheusReader(config.prometheus)
    analyzer = Analyzer(config, reader, pool=FitPool(1), shard=shard, clock=lambda: end)
    analyzer.refit()
    snapshot = analyzer.score()
    return snapshot.results, reader.points_read


BH_FIELDS = {"q_value", "confidence", "verdict", "severity", "regression_start", "verdict_reason"}


@pytest.mark.integration
def test_shards_read_their_own_part_and_together_publish_what_one_instance_does(start_prometheus) -> None:
    """Each of two shards pushes a label matcher into the query and reads about its own share of the samples;
    the union of their results is the single instance's, except the fields that depend on Benjamini-Hochberg over
    the run (q-value, confidence and the verdict built on them), which each shard computes over its own series.
    A query whose values a matcher would change (a ratio to a total over all series) is read whole by every
    shard, with the same results."""
    end = np.floor(1_767_571_200.0 / 300) * 300
    series = []
    for i in range(40):
        data = generate(days=3, step=300, level=1.0 + i % 7, seed=i, end=end)
        labels = {"instance": f"10.0.0.{i}:9100", "job": f"svc-{i % 3}"}
        series.append(BackfillSeries("shard_test_latency", labels, data.timestamps, data.values))
    prometheus = start_prometheus(series)
    targets = [{"name": "lat", "query": "shard_test_latency"},
               {"name": "share", "query": "shard_test_latency / scalar(sum(shard_test_latency))"}]  # fmt: skip
    config = build_config({
        "prometheus": {"url": prometheus.url},
        "defaults": {"history": "3d", "min_history": "1d", "model": "profile"},
        "targets": targets,
    })  # fmt: skip
    lat_only = replace(config, targets=config.targets[:1])
    single, single_points = analyse_with(lat_only, Shard(0, 1), end)
    for index in range(2):
        results, points = analyse_with(lat_only, Shard(index, 2), end)
        owned = len(results) / len(single)
        assert points / single_points == pytest.approx(owned, rel=0.1), (index, owned, points / single_points)
    single, _ = analyse_with(config, Shard(0, 1), end)
    by_key = {(r.target, series_key(r.labels)): r for r in single}
    union = []
    for index in range(2):
        union += analyse_with(config, Shard(index, 2), end)[0]
    assert sorted(by_key) == sorted((r.target, series_key(r.labels)) for r in union)
    for result in union:
        expected = by_key[(result.target, series_key(result.labels))]
        for name, value in vars(result).items():
            if name not in BH_FIELDS:
                assert value == getattr(expected, name) or (value != value and getattr(expected, name) != getattr(
                    expected, name)), (result.target, result.labels, name)  # fmt: skip


def test_the_partition_label_is_the_one_that_reads_the_fewest_series_of_other_shards() -> None:
    from analyzer.service.partition import choose_partition, value_regex

    series = [{"job": f"svc-{i % 3}", "instance": f"10.0.0.{i}:9100", "__name__": "m"} for i in range(30)]
    owned = [i % 2 == 0 for i in range(30)]
    chosen = choose_partition(series, owned)
    assert chosen is not None and chosen.label == "instance" and chosen.covered == chosen.owned == 15
    only_job = [{"job": s["job"]} for s in series]  # 3 values for 30 series: reads every series
    assert choose_partition(only_job, owned) is None
    assert choose_partition([{}] * 4, [True, False, True, False]) is None  # no label to match on
    assert choose_partition(series, [False] * 30).empty  # owns nothing, reads nothing
    odd = frozenset({"a.b", "x|y", "(z)", 'q"uote', "back\\slash", "名前", "+Inf"})
    import re

    pattern = re.compile(value_regex(odd))
    assert all(pattern.fullmatch(value) for value in odd)
    assert not any(pattern.fullmatch(value) for value in ("aXb", "x", "y", "z", "(z)x"))
