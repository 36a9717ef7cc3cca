"""A self-contained HTML report: summary, a table of every series (worst first) and, per regressed series,
a plot of the observed values against the expected band with the candidate window and the change start
marked, plus the likely cause and recommendations. Plots are PNGs embedded as base64, CSS is inline: the file
opens from a CI artifact with no network.

matplotlib comes with the ``reports`` extra (``pip install ".[reports]"`` in a checkout); without it the report
is written with a note instead of plots.
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

from analyzer.gate.check import FAIL, PASS, UNDECIDED, WARN, PlotData
from analyzer.gate.reports.markdown import CHANGE_HEADER, HEADLINES, SIGN_NOTE
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


# one legend per kind of plot for the whole page: drawing a legend in every plot costs about a third of its time
LEGENDS = {
    "time": '<p class="muted">Time plots: <span style="color:#222">&#9473; observed</span>, '
    '<span style="color:#1565c0">&#9473; expected</span>, <span style="color:#90caf9">&#9608; expected band</span>, '
    '<span style="color:#888">&#9477; candidate window start</span>, <span style="color:#c62828">&#9473; change '
    "start</span></p>",
    "distribution": '<p class="muted">Window plots (what the test compared): left, the values over time with '
    '<span style="color:#888">&#9477; the baseline median</span>, <span style="color:#888">&#9477; the candidate '
    'window start</span> and <span style="color:#c62828">&#9473; the change start</span>; right, the baseline\'s '
    "and the candidate's values side by side (box: quartiles, line: median).</p>",
    "builds": '<p class="muted">Build plots: <span style="color:#222">&#9473; the level of each build</span>, '
    '<span style="color:#1565c0">&#9473; the mean between change points</span>, <span style="color:#888">&#9477; '
    'a change point</span>, <span style="color:#c62828">&#9473; the first build of the regression</span>.</p>',
}


def plot_png(plot: PlotData, title: str, change_start: float | None = None) -> str | None:
    """The plot as base64 PNG, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    draw = {"builds": _draw_builds, "distribution": _draw_distribution}.get(plot.kind, _draw_time)
    figure = draw(plt, plot, title, change_start)
    try:
        figure.subplots_adjust(left=0.07, right=0.99, top=0.9, bottom=0.14, wspace=0.15)  # tight_layout: a full draw
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _date_axis(axes) -> None:
    import matplotlib.dates as mdates

    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(axes.xaxis.get_major_locator()))
    axes.grid(alpha=0.3)


def _draw_time(plt, plot: PlotData, title: str, change_start: float | None):
    """Observed against the expected band over time (stored mode, once, backtest)."""
    times = (plot.timestamps * 1000).astype("datetime64[ms]")
    figure, axes = plt.subplots(figsize=(9, 3), dpi=90)
    if np.isfinite(plot.lower).any():
        axes.fill_between(times, plot.lower, plot.upper, color="#90caf9", alpha=0.45)
    if np.isfinite(plot.expected).any():
        axes.plot(times, plot.expected, color="#1565c0", linewidth=1)
    axes.plot(times, plot.values, color="#222", linewidth=1)
    axes.axvline(_time(plot.candidate_start), color="#888", linestyle="--", linewidth=1)
    if change_start is not None:
        axes.axvline(_time(change_start), color="#c62828", linewidth=1.5)
    axes.set_title(title, fontsize=9)
    _date_axis(axes)
    return figure


def _draw_distribution(plt, plot: PlotData, title: str, change_start: float | None):
    """Window and selector modes: no band over time (the baseline is a sample, not an expectation for each
    instant), but the two samples the test compared."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3), dpi=90, gridspec_kw={"width_ratios": [2.2, 1]})
    times = (plot.timestamps * 1000).astype("datetime64[ms]")
    left.plot(times, plot.values, color="#222", linewidth=1)
    baseline = plot.baseline_values if plot.baseline_values is not None else np.array([])
    baseline = baseline[np.isfinite(baseline)]
    if baseline.size:
        left.axhline(float(np.median(baseline)), color="#888", linestyle=":", linewidth=1.2)
    left.axvline(_time(plot.candidate_start), color="#888", linestyle="--", linewidth=1)
    if change_start is not None:
        left.axvline(_time(change_start), color="#c62828", linewidth=1.5)
    left.set_title(title, fontsize=9)
    _date_axis(left)
    candidate = plot.values[plot.timestamps >= plot.candidate_start]
    candidate = candidate[np.isfinite(candidate)]
    samples = [(name, v) for name, v in (("baseline", baseline), ("candidate", candidate)) if v.size]
    if samples:
        right.boxplot([v for _, v in samples], showfliers=False, widths=0.5, medianprops={"color": "#c62828"})
        right.set_xticks(range(1, len(samples) + 1), [f"{name}\n(n={v.size})" for name, v in samples], fontsize=8)
        right.sharey(left)
    right.set_title("compared", fontsize=9)
    right.grid(alpha=0.3, axis="y")
    return figure


def _draw_builds(plt, plot: PlotData, title: str, change_start: float | None):
    """One level per build: the change points and the mean between them."""
    figure, axes = plt.subplots(figsize=(9, 3), dpi=90)
    positions = plot.timestamps
    axes.plot(positions, plot.values, color="#222", linewidth=1, marker="o", markersize=2)
    axes.step(positions, plot.expected, where="mid", color="#1565c0", linewidth=1.2)
    for mark in plot.marks:
        axes.axvline(mark - 0.5, color="#888", linestyle=":", linewidth=1)
    if change_start is not None:
        axes.axvline(change_start - 0.5, color="#c62828", linewidth=1.5)
    ticks = np.unique(np.linspace(0, positions.size - 1, min(positions.size, 8)).round().astype(int))
    axes.set_xticks(ticks, [plot.builds[i] for i in ticks], fontsize=8)
    axes.set_xlabel("build", fontsize=8)
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)
    return figure


def _bold(markdown: str) -> str:
    """``**x**`` of the shared Markdown sentence as <b>x</b>, the rest escaped."""
    parts = html.escape(markdown).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


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
        marker = item.change_start
        if item.plot.kind == "builds":  # the change build's position, not a time
            marker = float(item.plot.builds.index(item.change_build)) if item.change_build in item.plot.builds else None
        image = plot_png(item.plot, f"{item.target} {item.series}".strip(), marker)
        if image:
            parts.append(
                f'<img alt="observed vs expected for {html.escape(item.target)}" src="data:image/png;base64,{image}">'
            )
    facts = []
    if item.change_build is not None:
        facts.append(f"Change build: <code>{html.escape(item.change_build)}</code> (the first build at the new level)")
    if item.change_points:
        rows = "".join(
            f"<tr><td><code>{html.escape(c.build)}</code></td><td>{c.change_pct:+.1f}%</td><td>{c.direction}</td>"
            f"<td>{p_value(c.p_value)}</td></tr>"
            for c in item.change_points
        )
        history = f"<table><tr><th>build</th><th>change, + = worse</th><th>direction</th><th>p</th></tr>{rows}</table>"
    else:
        history = ""
    if item.change_start is not None:
        facts.append(f"Change start: {rfc3339(item.change_start)}")
    if item.likely_cause:
        facts.append(
            f"Likely cause: {html.escape(item.likely_cause.description)}"
            + (f" at {rfc3339(item.likely_cause.timestamp)}" if item.likely_cause.timestamp is not None else "")
        )
    if facts:
        parts.append("<p>" + "<br>".join(facts) + "</p>")
    parts.append(history)
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
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
    ordered = report.worst_first()
    flagged = [i for i in ordered if i.verdict in (FAIL, WARN)]
    header = "".join(
        f"<th>{h}</th>"
        for h in (
            "verdict",
            "target",
            "series",
            CHANGE_HEADER,
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
        else '<p class="muted">Plots need matplotlib: pip install matplotlib (the reports extra of Perf Sentinel).</p>'
    )
    if with_plots and len(flagged) > max_plots:
        note += f'<p class="muted">Plots for the {max_plots} worst of {len(flagged)} regressed series.</p>'
    kinds = dict.fromkeys(i.plot.kind for i in flagged[:max_plots] if i.plot is not None)
    legend = "".join(LEGENDS[k] for k in kinds) if with_plots else ""
    headline = HEADLINES.get(report.verdict, report.verdict)
    generated = f"generated {rfc3339(report.generated_at)} in {report.duration:.1f} s"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Perf Sentinel {html.escape(report.title)}</title>
<style>{STYLE}</style></head><body>
<h1>{_badge(report.verdict)} Perf Sentinel {html.escape(report.title)}: {html.escape(headline)}</h1>
<p>{html.escape(counts)}; exit code {report.exit_code}; {generated}.</p>
<table>{settings}</table>
{f"<h2>Errors</h2><ul>{errors}</ul>" if errors else ""}
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
{f"<p>{_bold(SIGN_NOTE)}</p>" if report.kind == "check" else ""}
<h2>Regressed series</h2>{note}{legend}
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
