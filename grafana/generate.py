"""Generates the Perf Sentinel Grafana dashboards (grafana/dashboards/*.json) with grafana-foundation-sdk.

Run ``python grafana/generate.py`` after changing this file (needs the ``dashboards`` extra:
``pip install -e '.[dashboards]'``); tests/test_dashboards.py fails when the committed JSON differs from what this
generates. The JSON is committed so that users import or provision it without Python.

Variables: every dashboard has ``${datasource}``; overview has ``target`` (multi); drill-down has ``target``,
``series_label`` (the label that tells a target's series apart, e.g. service) and ``series`` (its values);
self-monitoring has ``instance``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["perfsentinel"]

# the analyzer's own run metrics label their scheduled task (score|refit) `task`, so the scrape's `job` stays intact
RUN_JOB = "task"


# ---------------------------------------------------------------- building blocks
def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False, table_format: bool = False):
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


SCORE_THRESHOLDS = ((None, "green"), (1.0, "orange"), (3.0, "red"))
# the series dashboard draws the band edge as a fixed line and each alert's calibrated threshold as a dashed series
BAND_EDGE = ((None, "green"), (1.0, "orange"))
THRESHOLD_LINE = [
    dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
    dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
]


def graph(title: str, description: str, *queries, unit: str = "short", width: int = 12, height: int = 8):
    panel = timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
    for q in queries:
        panel = panel.with_target(q)
    return panel.span(width).height(height)


def threshold_lines(panel: timeseries.Panel, legend_prefix: str) -> timeseries.Panel:
    """Queries whose legend starts with ``legend_prefix`` are drawn as dashed red lines."""
    return panel.override_by_regexp(f"^{legend_prefix}.*", THRESHOLD_LINE)


def single(title: str, description: str, expr: str, color: str, unit: str = "short"):
    return (
        stat.Panel().title(title).description(description).datasource(DATASOURCE)
        .with_target(query(expr, instant=True)).unit(unit).span(4).height(4)
        .thresholds(thresholds((None, "green"), (1.0, color)))
    )  # fmt: skip


def variable_datasource() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def variable_query(name: str, label: str, expr: str, multi: bool = False) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name).label(label).datasource(DATASOURCE)
        .query({"query": expr, "refId": f"{name}-values", "qryType": 1})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
    )  # fmt: skip
    if multi:
        variable = variable.multi(True).include_all(True).all_value(".*")
    return variable


def base(uid: str, title: str, description: str) -> db.Dashboard:
    return (
        db.Dashboard(title).uid(uid).description(description).tags(TAGS).editable()
        .time("now-6h", "now").refresh("1m").timezone("browser").tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .with_variable(variable_datasource())
        .link(db.DashboardLink("Perf Sentinel").type(dm.DashboardLinkType.DASHBOARDS).tags(TAGS)
              .as_dropdown(True).include_vars(True).keep_time(True))
    )  # fmt: skip


# ---------------------------------------------------------------- overview
SEL = 'target=~"$target"'


def overview() -> db.Dashboard:
    regressed_filter = f"perfsentinel_regression_severity{{{SEL}}} > 0"
    return (
        base("perfsentinel-overview", "Perf Sentinel / Overview",
             "Regressions by tier, regressed series, anomaly state and drift across targets.")
        .with_variable(variable_query("target", "Target", "label_values(perfsentinel_series_status, target)", True))
        .with_row(db.Row("Now"))
        .with_panel(single("Critical regressions", "Series whose regression verdict is critical.",
                           f"count(perfsentinel_regression_severity{{{SEL}}} == 3) or vector(0)", "red"))
        .with_panel(single("Significant regressions", "Series whose regression verdict is significant.",
                           f"count(perfsentinel_regression_severity{{{SEL}}} == 2) or vector(0)", "orange"))
        .with_panel(single("Minor regressions", "Series whose regression verdict is minor.",
                           f"count(perfsentinel_regression_severity{{{SEL}}} == 1) or vector(0)", "yellow"))
        .with_panel(single("Anomalous series", "Series whose latest sample is outside its band (score > 1).",
                           f"count(perfsentinel_anomaly_score{{{SEL}}} > 1) or vector(0)", "orange"))
        .with_panel(single("Series analyzed", "Series in the last analysis, all statuses.",
                           f"sum(perfsentinel_series{{{SEL}}})", "green"))
        .with_panel(single("Series without a verdict", "Series with status insufficient_data or error.",
                           f'sum(perfsentinel_series{{{SEL},status!="ok"}})', "orange"))
        .with_row(db.Row("Regressions"))
        .with_panel(regressed_table(regressed_filter))
        .with_panel(graph("Regressed series by tier", "Series per regression tier over time.",
                          query(f"count(perfsentinel_regression_severity{{{SEL}}} == 1) or vector(0)", "minor", "A"),
                          query(f"count(perfsentinel_regression_severity{{{SEL}}} == 2) or vector(0)", "significant",
                                "B"),
                          query(f"count(perfsentinel_regression_severity{{{SEL}}} == 3) or vector(0)", "critical", "C"),
                          width=24))
        .with_row(db.Row("Anomalies and drift"))
        .with_panel(
            statetimeline.Panel().title("Anomaly state")
            .description("Anomaly score of each series over time: green inside the band, orange outside (> 1), "
                         "red far outside (> 3).")
            .datasource(DATASOURCE).with_target(query(f"perfsentinel_anomaly_score{{{SEL}}}"))
            .thresholds(thresholds(*SCORE_THRESHOLDS)).color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
            .show_value(cm.VisibilityMode.NEVER).span(24).height(10)
        )
        .with_panel(graph("Drift score (top 10)", "Slow departure from the baseline; above 1 it exceeds what the "
                          "baseline allows.", query(f"topk(10, perfsentinel_drift_score{{{SEL}}})"), width=24))
        .with_row(db.Row("Notification budget"))
        .with_panel(budget_table())
    )  # fmt: skip


CROSSINGS = {kind: f"perfsentinel_{kind}_crossings_per_day{{{SEL}}}" for kind in ("anomaly", "drift", "regression")}


def budget_table() -> table.Panel:
    """The 10 series with the highest realised crossing rate (all three alerts), with the rate of each alert."""
    # the three rates come from the same record of the series: present together (from its second day), same labels
    top = f"topk(10, {' + '.join(CROSSINGS.values())})"
    # `sum without ()` drops __name__, so the merge joins the four queries on the series labels alone
    fields = [("A", top)] + [
        (ref, f"sum without () ({expr} and {top})") for ref, expr in zip("BCD", CROSSINGS.values(), strict=True)
    ]
    panel = (
        table.Panel().title("Notification budget (top 10)")
        .description("The series that spend their notification budget: threshold crossings per day of the "
                     "anomaly, drift and regression alerts together over the last 14 days (series in their first "
                     "day have no rate yet), and of each alert. The budget is the target's "
                     "max_notifications_per_day (default 0.1 a day per series: half to anomalies, a quarter each to "
                     "drift and regressions); a series far above it has thresholds that its last refit has not "
                     "caught up with.")
        .datasource(DATASOURCE).span(24).height(10).decimals(3)
        .sort_by([common.TableSortByFieldState().display_name("Crossings per day").desc(True)])
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "__name__": True},
            "renameByName": {"Value #A": "Crossings per day", "Value #B": "Anomaly", "Value #C": "Drift",
                             "Value #D": "Regression"}}))
    )  # fmt: skip
    for ref, expr in fields:
        panel = panel.with_target(query(expr, ref=ref, instant=True, table_format=True))
    return panel


def regressed_table(regressed_filter: str) -> table.Panel:
    """One row per regressed series: tier, change %, p-value, effect size, since (queries joined on labels)."""
    fields = [
        ("A", f"perfsentinel_regression_severity{{{SEL}}} > 0"),
        ("B", f"perfsentinel_regression_change_ratio and {regressed_filter}"),
        ("C", f"perfsentinel_regression_p_value and {regressed_filter}"),
        ("D", f"perfsentinel_regression_effect_size and {regressed_filter}"),
        ("E", f"perfsentinel_regression_start_timestamp_seconds * 1000 and {regressed_filter}"),
    ]
    panel = (
        table.Panel().title("Regressed series")
        .description("Every series with a regression verdict: tier (1 minor, 2 significant, 3 critical), change "
                     "(positive = worse), p-value, effect size and when the regression started.")
        .datasource(DATASOURCE).span(24).height(10)
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "__name__": True},
            "renameByName": {"Value #A": "Tier", "Value #B": "Change", "Value #C": "p-value",
                             "Value #D": "Effect size", "Value #E": "Since"}}))
        .override_by_name("Change", [dm.DynamicConfigValue(id_val="unit", value="percentunit")])
        .override_by_name("Since", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .override_by_name("p-value", [dm.DynamicConfigValue(id_val="decimals", value=4)])
        .override_by_name("Tier", [dm.DynamicConfigValue(id_val="mappings", value=[
            {"type": "value", "options": {"1": {"text": "minor", "color": "yellow"},
                                          "2": {"text": "significant", "color": "orange"},
                                          "3": {"text": "critical", "color": "red"}}}])])
    )  # fmt: skip
    for ref, expr in fields:
        panel = panel.with_target(query(expr, ref=ref, instant=True, table_format=True))
    return panel


# ---------------------------------------------------------------- series drill-down
SERIES = 'target="$target",$series_label=~"$series"'


def drilldown() -> db.Dashboard:
    return (
        base("perfsentinel-series", "Perf Sentinel / Series",
             "One target's series: observed value with the expected band, anomaly score, regression verdict.")
        .with_variable(variable_query("target", "Target", "label_values(perfsentinel_series_status, target)"))
        .with_variable(
            db.CustomVariable("series_label").label("Series label")
            .description("The label that tells the target's series apart")
            .values("service,instance,exported_instance,job,exported_job,pod,namespace,handler,route,method")
        )
        .with_variable(variable_query(
            "series", "Series", 'label_values(perfsentinel_series_status{target="$target"}, $series_label)'))
        .annotation(
            db.AnnotationQuery().name("Regression start").datasource(DATASOURCE).enable(True).icon_color("red")
            .expr(f"perfsentinel_regression_start_timestamp_seconds{{{SERIES}}} * 1000")
        )
        .with_row(db.Row("Value and band"))
        .with_panel(
            graph("Observed and expected", "The latest scored sample, the expected value and the band's lower "
                  "and upper bound; the area between the bounds is filled.",
                  query(f"perfsentinel_observed_value{{{SERIES}}}", "observed", "A"),
                  query(f'perfsentinel_expected_value{{{SERIES},bound="expected"}}', "expected", "B"),
                  query(f'perfsentinel_expected_value{{{SERIES},bound="lower"}}', "lower", "C"),
                  query(f'perfsentinel_expected_value{{{SERIES},bound="upper"}}', "upper", "D"),
                  width=24, height=10)
            .override_by_regexp("upper.*", [dm.DynamicConfigValue(id_val="custom.fillBelowTo", value="lower")])
            .override_by_regexp("(lower|upper).*", [
                dm.DynamicConfigValue(id_val="custom.lineWidth", value=0),
                dm.DynamicConfigValue(id_val="custom.fillOpacity", value=20)])
        )
        .with_panel(
            threshold_lines(
                graph("Anomaly score", "1.0 (line) is the edge of the band, counted in the target's bad direction. "
                      "The dashed line is the series' calibrated threshold (perfsentinel_anomaly_threshold, at "
                      "least 1.0): PerfSentinelAnomaly fires while the score is above it.",
                      query(f"perfsentinel_anomaly_score{{{SERIES}}}", "{{$series_label}}", "A"),
                      query(f"perfsentinel_anomaly_threshold{{{SERIES}}}", "threshold {{$series_label}}", "B"))
                .thresholds(thresholds(*BAND_EDGE))
                .thresholds_style(common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)),
                "threshold ")
        )
        .with_panel(
            graph("Status", "1 for the series' current status and reason.",
                  query(f"perfsentinel_series_status{{{SERIES}}}", "{{status}} {{reason}}"))
        )
        .with_row(db.Row("Regression verdict"))
        .with_panel(threshold_lines(
            graph("Change (positive = worse)", "Relative change of the recent window against the reference. The "
                  "dashed line is the change a regression alert of the series needs (perfsentinel_regression_"
                  "threshold_ratio, at least the minor tier).",
                  query(f"perfsentinel_regression_change_ratio{{{SERIES}}}", "{{$series_label}}", "A"),
                  query(f"perfsentinel_regression_threshold_ratio{{{SERIES}}}", "threshold {{$series_label}}", "B"),
                  unit="percentunit", width=8),
            "threshold "))
        .with_panel(graph("p-value", "Probability of a change at least this large without a regression.",
                          query(f"perfsentinel_regression_p_value{{{SERIES}}}", "{{$series_label}}"), width=8))
        .with_panel(threshold_lines(
            graph("Tier and drift", "Regression tier (0 none, 1 minor, 2 significant, 3 critical) and drift score. "
                  "The dashed line is the series' calibrated drift threshold (perfsentinel_drift_threshold, at "
                  "least 1.0): PerfSentinelDrift fires while the drift score is above it and the change is at "
                  "least 5%, unless an anomaly alert of the series fired in the last 6 hours.",
                  query(f"perfsentinel_regression_severity{{{SERIES}}}", "tier {{$series_label}}", "A"),
                  query(f"perfsentinel_drift_score{{{SERIES}}}", "drift {{$series_label}}", "B"),
                  query(f"perfsentinel_drift_threshold{{{SERIES}}}", "drift threshold {{$series_label}}", "C"),
                  width=8),
            "drift threshold "))
        .with_row(db.Row("Notification budget"))
        .with_panel(
            stat.Panel().title("Threshold crossings per day")
            .description("Realised rate of each alert: times a day the series crossed its calibrated threshold "
                         "over the last 14 days (no value in the series' first day). The budget is the target's "
                         "max_notifications_per_day (default 0.1 a day per series: 0.05 anomaly, 0.025 drift, "
                         "0.025 regression).")
            .datasource(DATASOURCE)
            .with_target(query(f"perfsentinel_anomaly_crossings_per_day{{{SERIES}}}", "anomaly {{$series_label}}",
                               "A"))
            .with_target(query(f"perfsentinel_drift_crossings_per_day{{{SERIES}}}", "drift {{$series_label}}",
                               "B"))
            .with_target(query(f"perfsentinel_regression_crossings_per_day{{{SERIES}}}",
                               "regression {{$series_label}}", "C"))
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .graph_mode(cm.BigValueGraphMode.AREA).color_mode(cm.BigValueColorMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).unit("short").decimals(3).span(24).height(5)
        )
    )  # fmt: skip


# ---------------------------------------------------------------- self-monitoring
INSTANCE = 'instance=~"$instance"'


def selfmonitoring() -> db.Dashboard:
    return (
        base("perfsentinel-self", "Perf Sentinel / Self-monitoring",
             "The analyzer's own health: runs, errors, series counts, Prometheus requests, fits.")
        .with_variable(variable_query("instance", "Instance", "label_values(perfsentinel_build_info, instance)",
                                      True))
        .with_row(db.Row("Runs"))
        .with_panel(graph("Run duration p95", "95th percentile duration of score and refit runs.",
                          query("histogram_quantile(0.95, sum by (le, " + RUN_JOB + ") "
                                f"(rate(perfsentinel_run_duration_seconds_bucket{{{INSTANCE}}}[5m])))",
                                "{{task}}"), unit="s", width=8))
        .with_panel(graph("Runs by outcome", "Runs per minute by job and outcome (success, failure, skipped).",
                          query(f"sum by ({RUN_JOB}, outcome) (rate(perfsentinel_runs_total{{{INSTANCE}}}[5m])) "
                                "* 60", "{{task}} {{outcome}}"), width=8))
        .with_panel(graph("Age of the published analysis", "Seconds since the last successful score run "
                          "published its results.",
                          query(f"time() - perfsentinel_last_analysis_timestamp_seconds{{{INSTANCE}}}",
                                "{{instance}}"), unit="s", width=8))
        .with_row(db.Row("Errors and series"))
        .with_panel(graph("Errors by stage", "Failures per minute by pipeline stage (query, fit, score) and target.",
                          query(f"sum by (stage, target) (rate(perfsentinel_errors_total{{{INSTANCE}}}[5m])) * 60",
                                "{{stage}} {{target}}"), width=8))
        .with_panel(graph("Series by status", "Series in the last analysis by target and status.",
                          query(f"sum by (target, status) (perfsentinel_series{{{INSTANCE}}})",
                                "{{target}} {{status}}"), width=8))
        .with_panel(graph("Target reads", "1 when the last read of the target's query succeeded.",
                          query(f"perfsentinel_target_query_success{{{INSTANCE}}}", "{{target}}"), width=8))
        .with_row(db.Row("Prometheus and fits"))
        .with_panel(graph("Prometheus requests by outcome", "Requests per second to Prometheus by outcome.",
                          query(f"sum by (outcome) (rate(perfsentinel_prometheus_requests_total{{{INSTANCE}}}[5m]))",
                                "{{outcome}}"), unit="reqps", width=8))
        .with_panel(graph("Prometheus request duration p95", "95th percentile duration of requests to Prometheus.",
                          query("histogram_quantile(0.95, sum by (le) (rate("
                                f"perfsentinel_prometheus_request_duration_seconds_bucket{{{INSTANCE}}}[5m])))",
                                "p95"), unit="s", width=8))
        .with_panel(graph("Fits by model and outcome", "Baseline fits in the last hour.",
                          query(f"sum by (model, outcome) (increase(perfsentinel_fits_total{{{INSTANCE}}}[1h]))",
                                "{{model}} {{outcome}}", "A"),
                          query("sum by (from_model, to_model) "
                                f"(increase(perfsentinel_fit_fallbacks_total{{{INSTANCE}}}[1h]))",
                                "fallback {{from_model}} -> {{to_model}}", "B"), width=8))
        .with_panel(graph("Fit duration p95", "95th percentile duration of one baseline fit by model.",
                          query("histogram_quantile(0.95, sum by (le, model) "
                                f"(rate(perfsentinel_fit_duration_seconds_bucket{{{INSTANCE}}}[1h])))",
                                "{{model}}"), unit="s", width=12))
        .with_panel(graph("Up", "Scrape health of the analyzer instances.",
                          query(f'up{{job=~"perfsentinel.*",{INSTANCE}}}', "{{instance}}"), width=12))
    )  # fmt: skip


DASHBOARDS = {"perfsentinel-overview.json": overview, "perfsentinel-series.json": drilldown,
              "perfsentinel-self.json": selfmonitoring}  # fmt: skip


def render(builder: db.Dashboard) -> str:
    document = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(builder.build()))
    for annotation in document.get("annotations", {}).get("list", []):
        if annotation.get("expr"):  # Prometheus annotation options the SDK has no builder method for
            annotation.update({"useValueForTime": True, "step": "60s", "titleFormat": "Regression start",
                               "textFormat": "{{target}} change since this point"})  # fmt: skip
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def generate() -> dict[str, str]:
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in generate().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
