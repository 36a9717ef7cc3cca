"""Generates the Perf Sentinel Grafana dashboards (grafana/dashboards/*.json) with grafana-foundation-sdk.

Run ``python grafana/generate.py`` after changing this file or a runbook in docs/runbooks/ (needs the ``dashboards``
extra: ``pip install -e '.[dashboards]'``); tests/test_dashboards.py fails when the committed JSON differs from what
this generates. The JSON is committed so that users import or provision it without Python.

Variables: every dashboard has ``${datasource}``; overview has ``target`` (multi); the series drill-down has
``target`` and ``series``, a series' ``series_id`` (perfsentinel_series_info: a stable hash of its label set, shown as
its ``series_key``), so any series can be chosen whatever its labels; self-monitoring has ``instance``. Every
per-series table and graph of the overview links to the drill-down with the series selected; the alerts'
``dashboard_url`` annotations link there too, and their ``runbook_url`` to a panel of the runbooks dashboard.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

from grafana_foundation_sdk.builders import common, prometheus, stat, statetimeline, table, text, timeseries
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm
from grafana_foundation_sdk.models import text as tm

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
RUNBOOKS = HERE.parent / "docs" / "runbooks"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["perfsentinel"]
SERIES_UID, RUNBOOKS_UID = "perfsentinel-series", "perfsentinel-runbooks"

# the analyzer's own run metrics label their scheduled task (score|refit) `task`, so the scrape's `job` stays intact
RUN_JOB = "task"

# perfsentinel_series_info{series_id, series_key}: one series whatever its labels (docs/metrics.md)
INFO = "perfsentinel_series_info"
IDENTITY = "series_id, series_key"
# Grafana's query_result() lists `name{label="value",...} value time` with the labels sorted: series_id comes first
SERIES_OPTION = '/series_id="(?<value>[0-9a-f]+)".*series_key="(?<text>[^"]*)"/'


def runbook_panel_id(alert: str) -> int:
    """The runbooks dashboard's panel of an alert, stable whatever other alerts come and go (rule files link to
    ``/d/perfsentinel-runbooks?viewPanel=<id>``)."""
    return 1000 + zlib.crc32(alert.encode()) % 900_000


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


# a value relative to the series' calibrated threshold: at or above 1 the alert's condition holds
ALERTING = ((None, "green"), (1.0, "red"))
# the series dashboard draws the band edge as a fixed line and each alert's calibrated threshold as a dashed series
BAND_EDGE = ((None, "green"), (1.0, "orange"))
THRESHOLD_LINE = [
    dm.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
    dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
]
TIER_MAPPING = [{"type": "value", "options": {"0": {"text": "none", "color": "green"},
                                              "1": {"text": "minor", "color": "yellow"},
                                              "2": {"text": "significant", "color": "orange"},
                                              "3": {"text": "critical", "color": "red"}}}]  # fmt: skip
HIDDEN = [dm.DynamicConfigValue(id_val="custom.hidden", value=True)]


def graph(title: str, description: str, *queries, unit: str = "short", width: int = 12, height: int = 8):
    panel = timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
    for q in queries:
        panel = panel.with_target(q)
    return panel.span(width).height(height)


def threshold_lines(panel: timeseries.Panel, legend_prefix: str) -> timeseries.Panel:
    """Queries whose legend starts with ``legend_prefix`` are drawn as dashed red lines."""
    return panel.override_by_regexp(f"^{legend_prefix}.*", THRESHOLD_LINE)


def single(title: str, description: str, expr: str, color: str, unit: str = "short", width: int = 3):
    return (
        stat.Panel().title(title).description(description).datasource(DATASOURCE)
        .with_target(query(expr, instant=True)).unit(unit).span(width).height(4)
        .thresholds(thresholds((None, "green"), (1.0, color)))
    )  # fmt: skip


def variable_datasource() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Data source").type("prometheus")


def variable_query(name: str, label: str, expr: str, multi: bool = False, regex: str = "") -> db.QueryVariable:
    variable = (
        db.QueryVariable(name).label(label).datasource(DATASOURCE)
        .query({"query": expr, "refId": f"{name}-values", "qryType": 1 if expr.startswith("label_values") else 3})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
    )  # fmt: skip
    if regex:
        variable = variable.regex(regex)
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


# ---------------------------------------------------------------- one series, whatever its labels
def identified(expr: str, own_labels: str = "") -> str:
    """``expr`` (per series) with the series' ``series_id`` and ``series_key`` added from perfsentinel_series_info,
    for legends and links; ``own_labels``: labels of ``expr`` the info metric does not have (``event``)."""
    ignored = f"{IDENTITY}, {own_labels}" if own_labels else IDENTITY
    return f"({expr}) * ignoring({ignored}) group_left({IDENTITY}) {INFO}{{{SEL}}}"


def chosen(expr: str, own_labels: str = "") -> str:
    """``expr`` (per series, of target ``$target``) for the drill-down's series ``$series`` only."""
    ignored = f"{IDENTITY}, {own_labels}" if own_labels else IDENTITY
    return f'({expr}) and ignoring({ignored}) {INFO}{{target="$target",series_id="$series"}}'


def drilldown_link(target: str, series_id: str) -> list:
    """A data link to the drill-down with the series selected (and the data source and time range kept)."""
    url = (f"/d/{SERIES_UID}/perf-sentinel-series?var-datasource=${{datasource}}&var-target={target}"
           f"&var-series={series_id}&${{__url_time_range}}")  # fmt: skip
    return [db.DashboardLink("Open the series").url(url)]


def table_link() -> list:
    """A table cell: the series of its row (columns ``target`` and ``series_id``)."""
    return drilldown_link("${__data.fields.target}", "${__data.fields.series_id}")


def graph_link() -> list:
    """A graph or state timeline: the series under the cursor (labels ``target`` and ``series_id``)."""
    return drilldown_link("${__field.labels.target}", "${__field.labels.series_id}")


def series_table(title: str, description: str, fields: list[tuple[str, str, str]], width: int = 24,
                 height: int = 8) -> table.Panel:  # fmt: skip
    """One row per series from instant queries joined on their labels: ``fields`` is (ref, expr, column name);
    every expr must carry ``series_id`` (``identified``). Each cell opens the series in the drill-down."""
    panel = (
        table.Panel().title(title).description(description).datasource(DATASOURCE).span(width).height(height)
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "__name__": True},
            "renameByName": {"series_key": "Series", **{f"Value #{ref}": name for ref, _, name in fields}}}))
        .override_by_name("series_id", HIDDEN).data_links(table_link())
    )  # fmt: skip
    for ref, expr, _ in fields:
        panel = panel.with_target(query(expr, ref=ref, instant=True, table_format=True))
    return panel


# ---------------------------------------------------------------- overview
SEL = 'target=~"$target"'
# the alerts' conditions (rules/perfsentinel-*.yml) without their `for:` and `unless`: what "alerting" means here
ABOVE_ANOMALY = f"perfsentinel_anomaly_score{{{SEL}}} > perfsentinel_anomaly_threshold{{{SEL}}}"
ABOVE_DRIFT = (f"perfsentinel_drift_score{{{SEL}}} > perfsentinel_drift_threshold{{{SEL}}} and "
               f"abs(perfsentinel_regression_change_ratio{{{SEL}}}) >= 0.05")  # fmt: skip
REGRESSION_ALERT = (f"perfsentinel_regression_severity{{{SEL}}} == {{tier}} and "
                    f"perfsentinel_regression_change_ratio{{{SEL}}} > "
                    f"perfsentinel_regression_threshold_ratio{{{SEL}}}")  # fmt: skip
WARMING = f"perfsentinel_scoring_start_timestamp_seconds{{{SEL}}}"


def alerting_regressions(tier: int) -> str:
    return REGRESSION_ALERT.replace("{tier}", str(tier))


def overview() -> db.Dashboard:
    return (
        base("perfsentinel-overview", "Perf Sentinel / Overview",
             "Regressions by tier, series above their alert thresholds, likely causes, warm-up, drift and the "
             "notification budget across targets. Every per-series table and graph opens the series in the Series "
             "dashboard.")
        .with_variable(variable_query("target", "Target", f"label_values({INFO}, target)", True))
        .with_row(db.Row("Now"))
        .with_panel(single("Critical regressions", "Series whose critical verdict is above their calibrated "
                           "regression threshold: PerfSentinelRegressionCritical's condition.",
                           f"count({alerting_regressions(3)}) or vector(0)", "red"))
        .with_panel(single("Significant regressions", "Series whose significant verdict is above their calibrated "
                           "regression threshold: PerfSentinelRegressionSignificant's condition.",
                           f"count({alerting_regressions(2)}) or vector(0)", "orange"))
        .with_panel(single("Minor regressions", "Series whose minor verdict is above their calibrated regression "
                           "threshold: PerfSentinelRegressionMinor's condition.",
                           f"count({alerting_regressions(1)}) or vector(0)", "yellow"))
        .with_panel(single("Above anomaly threshold", "Series whose anomaly score is above their calibrated "
                           "threshold (perfsentinel_anomaly_threshold): PerfSentinelAnomaly's condition. Outside the "
                           "band but below it does not count.", f"count({ABOVE_ANOMALY}) or vector(0)", "orange"))
        .with_panel(single("Drifting", "Series whose drift score is above their calibrated drift threshold and "
                           "whose level moved by at least 5%. For graphs: no alert reads the drift score (a "
                           "sustained change is what the regression and novelty alerts report).",
                           f"count({ABOVE_DRIFT}) or vector(0)", "yellow"))
        .with_panel(single("Series analyzed", "Series in the last analysis, all statuses.",
                           f"sum(perfsentinel_series{{{SEL}}})", "green"))
        .with_panel(single("Warming up", "Series with less history than their target's min_history: scored "
                           "from their expected start (table below). No alert meanwhile.",
                           f"count({WARMING}) or vector(0)", "blue"))
        .with_panel(single("Without a verdict", "Series with status error or insufficient_data for another reason "
                           "than the warm-up (too_many_gaps, flat, stale, pending, fit_failed, query_failed ...).",
                           f'count(perfsentinel_series_status{{{SEL},status!="ok",reason!="too_short"}}) or vector(0)',
                           "orange"))
        .with_row(db.Row("Regressions"))
        .with_panel(regressed_table())
        .with_panel(causes_table())
        .with_panel(graph("Regressions that alert, by tier", "Series per regression tier whose change is above "
                          "their calibrated threshold, over time.",
                          query(f"count({alerting_regressions(1)}) or vector(0)", "minor", "A"),
                          query(f"count({alerting_regressions(2)}) or vector(0)", "significant", "B"),
                          query(f"count({alerting_regressions(3)}) or vector(0)", "critical", "C"), width=12))
        .with_row(db.Row("Anomalies and drift"))
        .with_panel(
            statetimeline.Panel().title("Anomaly state")
            .description("Each series over time: green inside its band, yellow outside the band but below its "
                         "calibrated threshold, red above it (PerfSentinelAnomaly's condition). Click a series to "
                         "open it.")
            .datasource(DATASOURCE).with_target(query(identified(ANOMALY_STATE), "{{target}} {{series_key}}"))
            .thresholds(thresholds((None, "green"), (1.0, "yellow"), (2.0, "red")))
            .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
            .mappings([{"type": "value", "options": {"0": {"text": "inside the band"},
                                                     "1": {"text": "outside the band"},
                                                     "2": {"text": "above its threshold"}}}])
            .show_value(cm.VisibilityMode.NEVER).data_links(graph_link()).span(24).height(10)
        )
        .with_panel(
            graph("Drift score / threshold (top 10)", "Drift score divided by the series' calibrated drift "
                  "threshold: above 1 (the line) the slow change exceeds what the baseline allows more than the "
                  "series' own history did. For graphs: no alert reads it. Click a series to open it.",
                  query(f"topk(10, {identified(DRIFT_RATIO)})", "{{target}} {{series_key}}"), width=24)
            .thresholds(thresholds(*ALERTING))
            .thresholds_style(common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
            .data_links(graph_link())
        )
        .with_row(db.Row("Warm-up"))
        .with_panel(warming_table())
        .with_row(db.Row("Notification budget"))
        .with_panel(budget_table())
    )  # fmt: skip


# 0 inside the band, 1 outside it but not above the threshold, 2 above the threshold (the alert's condition)
ANOMALY_STATE = (f"({ABOVE_ANOMALY}) * 0 + 2 or (perfsentinel_anomaly_score{{{SEL}}} > 1) * 0 + 1 "
                 f"or perfsentinel_anomaly_score{{{SEL}}} * 0")  # fmt: skip
DRIFT_RATIO = f"perfsentinel_drift_score{{{SEL}}} / perfsentinel_drift_threshold{{{SEL}}}"
CROSSINGS = {kind: f"perfsentinel_{kind}_crossings_per_day{{{SEL}}}" for kind in ("anomaly", "drift", "regression")}


def budget_table() -> table.Panel:
    """The 10 series with the highest realised crossing rate (all three alerts), with the rate of each alert."""
    # the three rates come from the same record of the series: present together (from its second day), same labels
    top = f"topk(10, {' + '.join(CROSSINGS.values())})"
    fields = [("A", identified(top), "Crossings per day")] + [
        (ref, identified(f"{expr} and {top}"), name)
        for ref, expr, name in zip("BCD", CROSSINGS.values(), ("Anomaly", "Drift", "Regression"), strict=True)
    ]
    return (
        series_table("Notification budget (top 10)",
                     "The series that spend their notification budget: threshold crossings per day of the "
                     "anomaly, drift and regression thresholds together over the last 14 days (series in their first "
                     "day have no rate yet), and of each alert. The budget is the target's "
                     "max_notifications_per_day (default 0.1 a day per series: a quarter each to the anomaly, "
                     "novelty, drift and regression thresholds; no alert reads the drift threshold); a series far "
                     "above it has thresholds that its last refit has not "
                     "caught up with.", fields, height=10)
        .decimals(3).sort_by([common.TableSortByFieldState().display_name("Crossings per day").desc(True)])
    )  # fmt: skip


def regressed_table() -> table.Panel:
    """One row per series with a verdict: tier, change and the change its alert needs, p-value, effect size, since."""
    verdict = f"perfsentinel_regression_severity{{{SEL}}} > 0"
    fields = [
        ("A", identified(verdict), "Tier"),
        ("B", identified(f"perfsentinel_regression_change_ratio{{{SEL}}} and {verdict}"), "Change"),
        ("C", identified(f"perfsentinel_regression_threshold_ratio{{{SEL}}} and {verdict}"), "Alerts above"),
        ("D", identified(f"perfsentinel_regression_p_value{{{SEL}}} and {verdict}"), "p-value"),
        ("E", identified(f"perfsentinel_regression_effect_size{{{SEL}}} and {verdict}"), "Effect size"),
        ("F", identified(f"perfsentinel_regression_start_timestamp_seconds{{{SEL}}} * 1000 and {verdict}"), "Since"),
    ]
    return (
        series_table("Regressed series", "Every series with a regression verdict: tier, change (positive = "
                     "worse), the change above which its regression alert fires (its calibrated threshold; a "
                     "verdict below it does not alert), p-value, effect size and when the regression started. "
                     "Click a row to open the series.", fields, width=12, height=10)
        .override_by_name("Change", [dm.DynamicConfigValue(id_val="unit", value="percentunit")])
        .override_by_name("Alerts above", [dm.DynamicConfigValue(id_val="unit", value="percentunit")])
        .override_by_name("Since", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .override_by_name("p-value", [dm.DynamicConfigValue(id_val="decimals", value=4)])
        .override_by_name("Tier", [dm.DynamicConfigValue(id_val="mappings", value=TIER_MAPPING)])
    )  # fmt: skip


def causes_table() -> table.Panel:
    """The likely cause of each standing regression (perfsentinel_regression_event_info), with tier and start."""
    event = f"perfsentinel_regression_event_info{{{SEL}}}"
    fields = [
        ("A", identified(f"perfsentinel_regression_start_timestamp_seconds{{{SEL}}} * 1000 * ignoring(event) "
                         f"group_right {event}", "event"), "Since"),
        ("B", identified(f"perfsentinel_regression_severity{{{SEL}}} * ignoring(event) group_right {event}",
                         "event"), "Tier"),
    ]  # fmt: skip
    return (
        series_table("Likely causes", "For each standing regression, the nearest event of its target's "
                     "events_query at or before the regression's start (a deploy, a config change): the likely "
                     "cause. Empty when no target has an events_query or no event precedes a regression. Click a "
                     "row to open the series.", fields, width=12, height=10)
        .override_by_name("event", [dm.DynamicConfigValue(id_val="displayName", value="Likely cause")])
        .override_by_name("Since", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .override_by_name("Tier", [dm.DynamicConfigValue(id_val="mappings", value=TIER_MAPPING)])
    )  # fmt: skip


def warming_table() -> table.Panel:
    """The series still warming up, with their history and when scoring starts."""
    fields = [
        ("A", identified(f"{WARMING} * 1000"), "Scored from"),
        ("B", identified(f"perfsentinel_history_seconds{{{SEL}}} and {WARMING}"), "History"),
    ]
    return (
        series_table("Series warming up", "Series with less history than their target's min_history (default "
                     "2 days): status insufficient_data, reason too_short, no score and no alert yet. Scored from "
                     "the time shown (the first refit pass after it, refit_every / 4 later at most). See "
                     "docs/baselines.md, Warm-up.", fields, height=8)
        .override_by_name("Scored from", [dm.DynamicConfigValue(id_val="unit", value="dateTimeAsIso")])
        .override_by_name("History", [dm.DynamicConfigValue(id_val="unit", value="s")])
        .sort_by([common.TableSortByFieldState().display_name("Scored from").desc(False)])
    )  # fmt: skip


# ---------------------------------------------------------------- series drill-down
def stat_panel(title: str, description: str, expr: str, width: int, legend: str = "", unit: str = "short",
               no_value: str = "") -> stat.Panel:  # fmt: skip
    """One figure of the chosen series (the legend as text with ``legend``)."""
    panel = (
        stat.Panel().title(title).description(description).datasource(DATASOURCE)
        .with_target(query(expr, legend, instant=True)).unit(unit).span(width).height(4)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .color_mode(cm.BigValueColorMode.VALUE).graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.NAME if legend else cm.BigValueTextMode.VALUE)
    )  # fmt: skip
    return panel.no_value(no_value) if no_value else panel


def drilldown() -> db.Dashboard:
    return (
        base(SERIES_UID, "Perf Sentinel / Series",
             "One series, whatever its labels: value and band, anomaly score against its threshold, regression "
             "verdict, change and start, drift, the likely cause, the warm-up and the notification budget.")
        .with_variable(variable_query("target", "Target", f"label_values({INFO}, target)"))
        .with_variable(variable_query("series", "Series", f'query_result({INFO}{{target="$target"}})',
                                      regex=SERIES_OPTION)
                       .description("Every analysed series of the target, by its labels (its series_id in the URL)"))
        .annotation(
            db.AnnotationQuery().name("Regression start").datasource(DATASOURCE).enable(True).icon_color("red")
            .expr(chosen('perfsentinel_regression_start_timestamp_seconds{target="$target"} * 1000'))
        )
        .link(db.DashboardLink("Runbooks").type(dm.DashboardLinkType.LINK).url(f"/d/{RUNBOOKS_UID}")
              .icon("doc").keep_time(False))
        .with_row(db.Row("Now"))
        .with_panel(stat_panel("Status", "ok, or insufficient_data / error with the reason.",
                               chosen('perfsentinel_series_status{target="$target"} == 1', "status, reason"), 4,
                               "{{status}} {{reason}}"))
        .with_panel(
            stat_panel("Anomaly score / threshold", "The anomaly score divided by the series' calibrated threshold: "
                       "at or above 1 PerfSentinelAnomaly's condition holds (red).",
                       chosen('perfsentinel_anomaly_score{target="$target"} / '
                              'perfsentinel_anomaly_threshold{target="$target"}'), 4, no_value="not scored")
            .decimals(2).thresholds(thresholds(*ALERTING))
        )
        .with_panel(
            stat_panel("Verdict", "Standing regression verdict: none, minor, significant or critical.",
                       chosen('perfsentinel_regression_severity{target="$target"}'), 4, no_value="not scored")
            .mappings(TIER_MAPPING)
        )
        .with_panel(
            stat_panel("Change", "Change of the recent level against the baseline (positive = worse); the series' "
                       "regression alert needs more than its calibrated threshold (Change graph below).",
                       chosen('perfsentinel_regression_change_ratio{target="$target"}'), 4, unit="percentunit",
                       no_value="not scored")
            .decimals(1)
        )
        .with_panel(stat_panel("Regression since", "Estimated start of the standing regression (its change point).",
                               chosen('perfsentinel_regression_start_timestamp_seconds{target="$target"} * 1000'), 4,
                               unit="dateTimeFromNow", no_value="no regression"))
        .with_panel(stat_panel("Likely cause", "The nearest event of the target's events_query at or before the "
                               "regression's start (perfsentinel_regression_event_info).",
                               chosen('perfsentinel_regression_event_info{target="$target"}', "event"), 4,
                               "{{event}}", no_value="no event"))
        .with_panel(stat_panel("Scored from", "While the series warms up: when its history reaches the target's "
                               "min_history and scoring starts (the next refit pass after it).",
                               chosen('perfsentinel_scoring_start_timestamp_seconds{target="$target"} * 1000'), 6,
                               unit="dateTimeFromNow", no_value="warm-up over"))
        .with_panel(stat_panel("History", "History the series had at its last refit (first sample to now).",
                               chosen('perfsentinel_history_seconds{target="$target"}'), 6, unit="s"))
        .with_panel(stat_panel("Baseline", "The baseline in use: model, version and why it was adopted.",
                               chosen('perfsentinel_baseline_info{target="$target"}',
                                      "model, version, reason, trained_from, trained_to"), 12,
                               "{{model}} v{{version}} ({{reason}}), trained {{trained_from}} to {{trained_to}}",
                               no_value="no baseline yet"))
        .with_row(db.Row("Value and band"))
        .with_panel(
            graph("Observed and expected", "The latest scored sample, the expected value and the band's lower "
                  "and upper bound; the area between the bounds is filled.",
                  query(chosen('perfsentinel_observed_value{target="$target"}'), "observed", "A"),
                  query(chosen('perfsentinel_expected_value{target="$target",bound="expected"}', "bound"),
                        "expected", "B"),
                  query(chosen('perfsentinel_expected_value{target="$target",bound="lower"}', "bound"), "lower", "C"),
                  query(chosen('perfsentinel_expected_value{target="$target",bound="upper"}', "bound"), "upper", "D"),
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
                      query(chosen('perfsentinel_anomaly_score{target="$target"}'), "anomaly score", "A"),
                      query(chosen('perfsentinel_anomaly_threshold{target="$target"}'), "threshold", "B"))
                .thresholds(thresholds(*BAND_EDGE))
                .thresholds_style(common.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE)),
                "threshold")
        )
        .with_panel(
            graph("Status", "1 for the series' current status and reason.",
                  query(chosen('perfsentinel_series_status{target="$target"}', "status, reason"),
                        "{{status}} {{reason}}"))
        )
        .with_row(db.Row("Regression verdict"))
        .with_panel(threshold_lines(
            graph("Change (positive = worse)", "Relative change of the recent window against the reference. The "
                  "dashed line is the change a regression alert of the series needs (perfsentinel_regression_"
                  "threshold_ratio, at least the minor tier).",
                  query(chosen('perfsentinel_regression_change_ratio{target="$target"}'), "change", "A"),
                  query(chosen('perfsentinel_regression_threshold_ratio{target="$target"}'), "threshold", "B"),
                  unit="percentunit", width=8),
            "threshold"))
        .with_panel(graph("p-value", "Probability of a change at least this large without a regression.",
                          query(chosen('perfsentinel_regression_p_value{target="$target"}'), "p-value"), width=8))
        .with_panel(threshold_lines(
            graph("Tier and drift", "Regression tier (0 none, 1 minor, 2 significant, 3 critical) and drift score. "
                  "The dashed line is the series' calibrated drift threshold (perfsentinel_drift_threshold, at "
                  "least 1.0), for graphs: no alert reads the drift score (a sustained change is what the "
                  "regression and novelty alerts report).",
                  query(chosen('perfsentinel_regression_severity{target="$target"}'), "tier", "A"),
                  query(chosen('perfsentinel_drift_score{target="$target"}'), "drift", "B"),
                  query(chosen('perfsentinel_drift_threshold{target="$target"}'), "drift threshold", "C"),
                  width=8),
            "drift threshold"))
        .with_row(db.Row("Notification budget"))
        .with_panel(
            stat.Panel().title("Threshold crossings per day")
            .description("Realised rate of each alert: times a day the series crossed its calibrated threshold "
                         "over the last 14 days (no value in the series' first day). The budget is the target's "
                         "max_notifications_per_day (default 0.1 a day per series: 0.05 anomaly, 0.025 drift, "
                         "0.025 regression).")
            .datasource(DATASOURCE)
            .with_target(query(chosen('perfsentinel_anomaly_crossings_per_day{target="$target"}'), "anomaly", "A"))
            .with_target(query(chosen('perfsentinel_drift_crossings_per_day{target="$target"}'), "drift", "B"))
            .with_target(query(chosen('perfsentinel_regression_crossings_per_day{target="$target"}'), "regression",
                               "C"))
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
            .graph_mode(cm.BigValueGraphMode.AREA).color_mode(cm.BigValueColorMode.NONE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME).unit("short").decimals(3).span(24).height(5)
        )
    )  # fmt: skip


# ---------------------------------------------------------------- runbooks
def runbook_height(markdown: str) -> int:
    """Grid rows (30 px) for a runbook: about 22 px per rendered line of 160 characters, at most 40 rows."""
    lines = sum(1 + len(line) // 160 for line in markdown.splitlines())
    return max(6, min(40, round(lines * 0.75) + 2))


def runbooks() -> db.Dashboard:
    """One text panel per runbook of docs/runbooks/, with a fixed id (``runbook_panel_id``): the alerts'
    runbook_url opens it with ``viewPanel``."""
    dashboard = base(RUNBOOKS_UID, "Perf Sentinel / Runbooks",
                     "One panel per Perf Sentinel alert: what it means, its impact, diagnosis and mitigation "
                     "(docs/runbooks/ of the Perf Sentinel source). Each alert's runbook_url opens its "
                     "panel.")  # fmt: skip
    for path in sorted(RUNBOOKS.glob("PerfSentinel*.md")):
        title, _, body = path.read_text(encoding="utf-8").partition("\n")
        body = body.strip()
        dashboard = dashboard.with_panel(
            text.Panel().id(runbook_panel_id(path.stem)).title(title.removeprefix("# ").strip())
            .description(f"docs/runbooks/{path.name}").mode(tm.TextMode.MARKDOWN).content(body)
            .span(24).height(runbook_height(body))
        )  # fmt: skip
    return dashboard


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
              "perfsentinel-self.json": selfmonitoring, "perfsentinel-runbooks.json": runbooks}  # fmt: skip


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
    for name, document in generate().items():
        (OUT / name).write_text(document)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
