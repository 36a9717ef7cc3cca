"""A self-contained HTML report: summary, a table of every series (worst first) and, per regressed series,
a plot of the observed values against the expected band with the candidate window and the change start
marked, plus the likely cause and recommendations. Plots are PNGs embedded as base64, CSS is inline: the file
opens from a CI artifact with no network.

matplotlib comes with the ``reports`` extra (``pip install perfsentinel[reports]``); without it the report
is written with a note instead of plots.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from analyzer.gate.check import FAIL, PASS, UNDECIDED, WARN, PlotData
from analyzer.gate.reports.markdown import HEADLINES
from analyzer.gate.reports.model import Report, ReportItem
from analyzer.gate.reports.text import change_text, item_headline, number, p_value
from analyzer.gate.timewindows import rfc3339

MAX_PLOTS = 50  # plots for the worst 50 regressed series (0.1-0.2 s and about 50 kB each); the rest get text only
COLOURS = {FAIL: "#c62828", WARN: "#ef6c00", UNDECIDED: "#6d6d6d", PASS: "#2e7d32"}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em} table{border-collapse:collapse;font-size:.9em}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top} th{background:#f4f4f4}
.verdict{color:#fff;border-radius:3px;padding:1px 6px;font-weight:600} code{font-size:.9em}
.series{border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0} img{max-width:100%}
.muted{color:#666}
"""


# one legend for all plots: drawing a legend in every plot costs about a third of the plot's time
LEGEND = (
    '<p class="muted">Plots: <span style="color:#222">&#9473; observed</span>, '
    '<span style="color:#1565c0">&#9473; expected</span>, <span style="color:#90caf9">&#9608; expected band</span>, '
    '<span style="color:#888">&#9477; candidate window start</span>, <span style="color:#c62828">&#9473; change '
    "start</span></p>"
)


def plot_png(plot: PlotData, title: str, change_start: float | None = None) -> str | None:
    """The plot as base64 PNG, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    times = (plot.timestamps * 1000).astype("datetime64[ms]")
    figure, axes = plt.subplots(figsize=(9, 3), dpi=90)
    try:
        if np.isfinite(plot.lower).any():
            axes.fill_between(times, plot.lower, plot.upper, color="#90caf9", alpha=0.45, label="expected band")
        if np.isfinite(plot.expected).any():
            axes.plot(times, plot.expected, color="#1565c0", linewidth=1, label="expected")
        axes.plot(times, plot.values, color="#222", linewidth=1, label="observed")
        axes.axvline(_time(plot.candidate_start), color="#888", linestyle="--", linewidth=1, label="candidate window")
        if change_start is not None:
            axes.axvline(_time(change_start), color="#c62828", linewidth=1.5, label="change start")
        axes.set_title(title, fontsize=9)
        axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(axes.xaxis.get_major_locator()))
        axes.grid(alpha=0.3)
        figure.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.14)  # tight_layout costs a full draw
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _time(seconds: float) -> np.datetime64:
    return np.datetime64(int(seconds * 1000), "ms")


def _setting(value: object) -> str:
    """Windows read as ``now-1h:now (2026-01-04T23:00:00Z .. 2026-01-05T00:00:00Z)``."""
    if isinstance(value, dict) and {"spec", "start", "end"} <= value.keys():
        return f"{value['spec']} ({value['start']} .. {value['end']})"
    return str(value)


def _badge(verdict: str) -> str:
    return f'<span class="verdict" style="background:{COLOURS.get(verdict, "#444")}">{html.escape(verdict)}</span>'


def _row(item: ReportItem) -> str:
    s = item.statistics or {}
    measure = (
        change_text(item)
        if item.anomaly is None
        else f"score {number(item.anomaly.get('score', item.anomaly.get('max_score')))}"
    )
    budget = ""
    if item.budget:
        budget = f"{item.budget['statistic']} {number(item.budget['observed'])}" + (
            "" if item.budget["passed"] else " (over)"
        )
    cells = [
        _badge(item.verdict),
        f"<code>{html.escape(item.target)}</code>",
        f"<code>{html.escape(item.series)}</code>",
        html.escape(measure),
        p_value(s.get("p_value")) if s else "",
        p_value(s.get("q_value")) if s else "",
        html.escape(f"{number(s.get('effect_size'))}") if s else "",
        html.escape(item.severity + (f" / {item.gate}" if item.gate else "")),
        html.escape(budget),
        html.escape(item.reason),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _section(item: ReportItem, with_plots: bool) -> str:
    parts = [
        f'<div class="series"><h3>{_badge(item.verdict)} <code>{html.escape(item.target)}</code> '
        f"<code>{html.escape(item.series)}</code></h3>",
        f"<p>{html.escape(item_headline(item))}</p>",
    ]
    if item.plot is not None and with_plots:
        image = plot_png(item.plot, f"{item.target} {item.series}", item.change_start)
        if image:
            parts.append(
                f'<img alt="observed vs expected for {html.escape(item.target)}" src="data:image/png;base64,{image}">'
            )
    facts = []
    if item.change_start is not None:
        facts.append(f"Change start: {rfc3339(item.change_start)}")
    if item.likely_cause:
        facts.append(
            f"Likely cause: {html.escape(item.likely_cause.description)} at {rfc3339(item.likely_cause.timestamp)}"
        )
    if facts:
        parts.append("<p>" + "<br>".join(facts) + "</p>")
    if item.recommendations:
        parts.append(
            "<ul>"
            + "".join(
                f"<li><b>{html.escape(r.action.replace('_', ' '))}</b>: {html.escape(r.text)}</li>"
                for r in item.recommendations
            )
            + "</ul>"
        )
    return "".join(parts) + "</div>"


def render(report: Report, with_plots: bool = True, max_plots: int = MAX_PLOTS) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items() if n) or "no series"
    settings = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_setting(v))}</td></tr>"
        for k, v in report.settings.items()
        if v is not None
    )
    errors = "".join(
        f"<li><b>{html.escape(e['target'])}</b>: {html.escape(e['kind'])}: {html.escape(e['message'])}</li>"
        for e in report.errors
    )
    ordered = report.worst_first()
    flagged = [i for i in ordered if i.verdict in (FAIL, WARN)]
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "verdict",
            "target",
            "series",
            "change [95% CI]",
            "p",
            "q",
            "Hedges' g",
            "tier / gate",
            "budget",
            "reason",
        )
    )
    note = (
        ""
        if _matplotlib_available() or not with_plots
        else '<p class="muted">Plots need matplotlib: pip install "perfsentinel[reports]".</p>'
    )
    if with_plots and len(flagged) > max_plots:
        note += f'<p class="muted">Plots for the {max_plots} worst of {len(flagged)} regressed series.</p>'
    headline = HEADLINES.get(report.verdict, report.verdict)
    generated = f"generated {rfc3339(report.generated_at)} in {report.duration:.1f} s"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Perf Sentinel {html.escape(report.title)}</title>
<style>{STYLE}</style></head><body>
<h1>{_badge(report.verdict)} Perf Sentinel {html.escape(report.title)}: {html.escape(headline)}</h1>
<p>{html.escape(counts)}; exit code {report.exit_code}; {generated}.</p>
<table>{settings}</table>
{f"<h2>Errors</h2><ul>{errors}</ul>" if errors else ""}
<h2>Regressed series</h2>{note}{LEGEND if flagged and with_plots else ""}
{"".join(_section(i, with_plots and n < max_plots) for n, i in enumerate(flagged)) or '<p class="muted">None.</p>'}
<h2>All series</h2>
<table><tr>{header}</tr>{"".join(_row(i) for i in ordered)}</table>
</body></html>
"""


def _matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
