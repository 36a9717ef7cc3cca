"""The dashboards against a real Prometheus that scrapes the exporter (issue 30.7): every panel query returns
data, every variable offers the series that exist, every data link and every alert's dashboard_url and runbook_url
open a dashboard that exists with a series that exists.

The exporter publishes one analysis made to hold every case the dashboards show: two targets with different label
names (service, and app/container), anomalies above and below their calibrated thresholds, drift, each regression
tier (one with a likely cause), a series warming up, a failed fit, crossing rates, baselines. Prometheus scrapes it
every second and evaluates the shipped rules with every ``for:`` divided by 300 (as test_e2e_alerting.py does),
so the per-series alerts fire within seconds."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import yaml

from analyzer.durations import parse_duration
from analyzer.prometheus.localprom import LocalPrometheus
from analyzer.results import ERROR, INSUFFICIENT_DATA, OK, SeriesResult, Snapshot, TargetOutcome
from exporter.selfmetrics import SelfMetrics
from exporter.server import Exposition, MetricsServer
from tests.conftest import REPO, require_tools
from tests.dashboard_queries import (
    DEFAULT_GRAFANA_URL,
    all_panels,
    data_links,
    instant,
    load_dashboards,
    metric_names,
    raw_queries,
    resolve_link,
    substitute,
    variable_options,
)
from tests.procs import wait_for

pytestmark = pytest.mark.integration
TIME_SCALE = 300
NOW = time.time()
DASHBOARDS = load_dashboards()
BY_UID = {d["uid"]: d for d in DASHBOARDS.values()}
OVERVIEW, SERIES = DASHBOARDS["perfsentinel-overview.json"], DASHBOARDS["perfsentinel-series.json"]


def scored(target: str, labels: dict[str, str], score: float = 0.2, **fields) -> SeriesResult:
    """A scored series with a baseline, a band and the three calibrated thresholds; ``fields`` override."""
    values = dict(timestamp=NOW - 60, value=1.0, expected=1.0, lower=0.8, upper=1.2, anomaly_score=score,
                  model="stl", seasonality="daily", drift_score=0.1, verdict="none", severity=0, change_pct=1.0,
                  p_value=0.4, q_value=0.5, effect_size=0.1, confidence=0.5, anomaly_threshold=1.5,
                  drift_threshold=1.2, regression_threshold_pct=5.0, anomaly_crossings_per_day=0.04,
                  drift_crossings_per_day=0.02, regression_crossings_per_day=0.01, baseline_version=2,
                  baseline_age_seconds=3600.0, baseline_reason="refresh", baseline_trained_from=NOW - 28 * 86400,
                  baseline_trained_to=NOW - 3600, history_seconds=28 * 86400.0)  # fmt: skip
    values.update(fields)
    return SeriesResult(target, labels, OK, "", **values)


def regressed(tier: int, change_pct: float, **fields) -> dict:
    verdict = {1: "minor", 2: "significant", 3: "critical"}[tier]
    return dict(verdict=verdict, severity=tier, change_pct=change_pct, p_value=1e-6, q_value=1e-5,
                effect_size=1.4, confidence=0.99999, regression_start=NOW - 5400, **fields)  # fmt: skip


def analysis() -> Snapshot:
    web, queue = "api_latency", "queue_depth"
    results = [
        scored(web, {"service": "checkout"}, 4.0),  # above its threshold (1.5): PerfSentinelAnomaly
        scored(web, {"service": "search"}, 1.3, anomaly_threshold=2.0, **regressed(1, 6.0)),  # outside, below
        scored(web, {"service": "payments"}, **regressed(2, 22.0, regression_event="deploy payments v2.3.1")),
        # drifting (the drift panels; no alert reads it), no verdict, a new pattern: PerfSentinelNovelty
        scored(web, {"service": "orders"}, drift_score=2.5, change_pct=-7.0, novelty_score=3.0, novelty_threshold=1.5),
        scored(queue, {"app": "shop", "container": "worker"}, **regressed(3, 45.0, regression_threshold_pct=30.0)),
        scored(queue, {"app": "shop", "container": "mailer"}),
        SeriesResult(
            web,
            {"service": "new"},
            INSUFFICIENT_DATA,
            "too_short",
            note="needs 2d of history, has 3h",
            history_seconds=3 * 3600.0,
            scoring_start=NOW + 45 * 3600,
        ),  # fmt: skip
        SeriesResult(queue, {"app": "shop", "container": "flaky"}, ERROR, "fit_failed", history_seconds=86400.0),
    ]
    targets = [TargetOutcome(web, True, "", 6, returned=6), TargetOutcome(queue, True, "", 3, returned=3)]
    return Snapshot(NOW, results, targets)


def record_self_metrics(telemetry: SelfMetrics) -> None:
    """Every self-monitoring family gets samples, increasing between scrapes."""
    telemetry.run_finished("score", "success", 0.2)
    telemetry.run_finished("refit", "success", 3.0)
    telemetry.stage_error("query", "queue_depth")
    telemetry.fit_finished("stl", "success", 0.05)
    telemetry.fit_finished("prophet", "failure", 1.0)
    telemetry.fallback("prophet", "profile")
    telemetry.prometheus_request("success", 0.03)
    telemetry.store_error("save")


def scaled_rules(destination: Path) -> list[str]:
    destination.mkdir()
    names = []
    for source in sorted((REPO / "rules").glob("perfsentinel-*.yml")):
        document = yaml.safe_load(source.read_text())
        for group in document["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = f"{max(1, round(parse_duration(rule[key]) / TIME_SCALE))}s"
        (destination / source.name).write_text(yaml.safe_dump(document, sort_keys=False))
        names.append(str(destination / source.name))
    return names


@pytest.fixture(scope="module")
def prometheus_url(tmp_path_factory: pytest.TempPathFactory):
    require_tools("prometheus")
    workdir = tmp_path_factory.mktemp("live")
    telemetry = SelfMetrics()
    exposition = Exposition(telemetry)
    record_self_metrics(telemetry)
    exposition.publish(analysis())
    server = MetricsServer(exposition, "127.0.0.1", 0)
    server.start()
    rules = scaled_rules(workdir / "rules")
    config = (
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: {rules}\n"
        "scrape_configs:\n  - job_name: perfsentinel\n    honor_labels: true\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{server.port}']\n"
    )
    (workdir / "prometheus").mkdir()
    prometheus = LocalPrometheus(workdir / "prometheus", config_text=config)
    prometheus.start()
    try:
        # a few scrapes for rate() and increase(), with the counters moving in between
        assert wait_for(lambda: instant(prometheus.url, "count_over_time(perfsentinel_series_info[1m])"), 30, 0.2)
        for _ in range(3):
            time.sleep(1.2)
            record_self_metrics(telemetry)
        time.sleep(2.5)
        yield prometheus.url
    finally:
        prometheus.stop()
        server.stop()


def drilldown_choices(url: str) -> list[dict[str, str]]:
    """Every (target, series) the drill-down's variables offer, as variable values."""
    variables = {v["name"]: v for v in SERIES["templating"]["list"]}
    chosen = []
    for _, target in variable_options(url, variables["target"], {}):
        for _, series in variable_options(url, variables["series"], {"target": target}):
            chosen.append({"datasource": "prometheus", "target": target, "series": series})
    return chosen


def test_every_overview_and_self_monitoring_query_returns_data(prometheus_url: str) -> None:
    values = {"datasource": "prometheus", "target": ".*", "instance": ".*"}
    empty = []
    for name in ("perfsentinel-overview.json", "perfsentinel-self.json"):
        for where, expr in raw_queries(DASHBOARDS[name]):
            if not instant(prometheus_url, substitute(expr, values)):
                empty.append(f"{name} {where}: {expr}")
            # no panel is saved by an `or vector(0)`: every metric it reads exists
            empty += [f"{name} {where}: no {metric}" for metric in metric_names(expr)
                      if not instant(prometheus_url, f'count({{__name__="{metric}"}})')]  # fmt: skip
    assert empty == []


def test_the_drilldown_offers_every_series_by_its_labels_and_each_shows_one_series(prometheus_url: str) -> None:
    choices = drilldown_choices(prometheus_url)
    variables = {v["name"]: v for v in SERIES["templating"]["list"]}
    texts = {text for c in choices for text, _ in variable_options(prometheus_url, variables["series"], c)}
    assert texts == {
        "service=checkout", "service=search", "service=payments", "service=orders", "service=new",
        "app=shop, container=worker", "app=shop, container=mailer", "app=shop, container=flaky",
    }  # fmt: skip
    assert len(choices) == 8 and len({c["series"] for c in choices}) == 8
    status = next(expr for where, expr in raw_queries(SERIES) if where == "panel 'Status' query A")
    for values in choices:  # one series per view, whatever labels the target uses
        assert len(instant(prometheus_url, substitute(status, values))) == 1, values


def test_every_drilldown_query_returns_data_for_a_series_that_has_it(prometheus_url: str) -> None:
    choices = drilldown_choices(prometheus_url)
    missing = [f"{where}: {expr}" for where, expr in raw_queries(SERIES) if not where.startswith("variable")
               and not any(instant(prometheus_url, substitute(expr, values)) for values in choices)]  # fmt: skip
    assert missing == []
    checkout = next(c for c in choices if instant(prometheus_url, substitute(
        'perfsentinel_series_info{target="$target",series_id="$series",service="checkout"}', c)))  # fmt: skip
    band = [expr for where, expr in raw_queries(SERIES) if where.startswith("panel 'Observed and expected'")]
    assert all(len(instant(prometheus_url, substitute(expr, checkout))) == 1 for expr in band)


def test_every_data_link_opens_the_drilldown_on_a_series_that_exists(prometheus_url: str) -> None:
    choices = {(c["target"], c["series"]) for c in drilldown_choices(prometheus_url)}
    values = {"datasource": "prometheus", "target": ".*"}
    opened = set()
    for panel, url in data_links(OVERVIEW):
        rows = [sample["metric"] for target in panel["targets"]
                for sample in instant(prometheus_url, substitute(target["expr"], values))]  # fmt: skip
        assert rows, panel["title"]
        for labels in rows:
            uid, variables = resolve_link(url, labels, values)
            assert uid in BY_UID and BY_UID[uid] is SERIES, (panel["title"], url)
            assert (variables["target"], variables["series"]) in choices, (panel["title"], labels)
            opened.add((panel["title"], labels.get("service") or labels.get("container")))
    assert {title for title, _ in opened} == {p["title"] for p, _ in data_links(OVERVIEW)}
    assert ("Likely causes", "payments") in opened and ("Series warming up", "new") in opened


def firing_alerts(url: str) -> list[dict]:
    alerts = requests.get(f"{url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


def test_every_alert_links_to_its_series_and_its_runbook(prometheus_url: str) -> None:
    per_series = {"PerfSentinelAnomaly": "checkout", "PerfSentinelNovelty": "orders",
                  "PerfSentinelRegressionMinor": "search", "PerfSentinelRegressionSignificant": "payments",
                  "PerfSentinelRegressionCritical": "worker"}  # fmt: skip

    def linked() -> dict[str, dict] | None:
        found = {a["labels"]["alertname"]: a for a in firing_alerts(prometheus_url)
                 if a["labels"]["alertname"] in per_series}  # fmt: skip
        return found if found.keys() == per_series.keys() else None

    alerts = wait_for(linked, 60, 0.5)
    assert alerts, [a["labels"]["alertname"] for a in firing_alerts(prometheus_url)]
    choices = {(c["target"], c["series"]) for c in drilldown_choices(prometheus_url)}
    status = next(expr for where, expr in raw_queries(SERIES) if where == "panel 'Status' query A")
    runbooks = {p["id"]: p["title"] for p in all_panels(DASHBOARDS["perfsentinel-runbooks.json"])}
    for name, alert in alerts.items():
        dashboard = urlsplit(alert["annotations"]["dashboard_url"])
        assert f"{dashboard.scheme}://{dashboard.netloc}" == DEFAULT_GRAFANA_URL
        assert BY_UID[dashboard.path.removeprefix("/d/")] is SERIES
        query = {key: value[0] for key, value in parse_qs(dashboard.query).items()}
        chosen = (query["var-target"], query["var-series"])
        assert chosen in choices, (name, alert["annotations"]["dashboard_url"])
        shown = instant(prometheus_url, substitute(status, {"target": chosen[0], "series": chosen[1]}))
        assert [s["metric"].get("service") or s["metric"].get("container") for s in shown] == [per_series[name]]
        runbook = urlsplit(alert["annotations"]["runbook_url"])
        assert BY_UID[runbook.path.removeprefix("/d/")] is DASHBOARDS["perfsentinel-runbooks.json"]
        assert runbooks[int(parse_qs(runbook.query)["viewPanel"][0])] == name
    # the warming series raises nothing, and every firing alert's runbook link opens its own runbook
    for alert in firing_alerts(prometheus_url):
        assert alert["labels"]["alertname"] != "PerfSentinelSeriesInsufficientData"
        panel = int(parse_qs(urlsplit(alert["annotations"]["runbook_url"]).query)["viewPanel"][0])
        assert runbooks[panel] == alert["labels"]["alertname"]
