"""Short human phrases shared by the JUnit, Markdown and HTML writers."""

from __future__ import annotations

import math

from analyzer.gate.reports.model import ReportItem
from analyzer.gate.timewindows import rfc3339


def pct(value: float | None, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.1f}%" if signed else f"{value:.1f}%"


def p_value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def change_text(item: ReportItem) -> str:
    s = item.statistics
    if not s:
        return "n/a"
    return f"{pct(s['change_pct'])} [{pct(s['ci_low_pct'])}, {pct(s['ci_high_pct'])}]"


def item_headline(item: ReportItem) -> str:
    """One line: what changed, how sure, what it means for the build."""
    name = f"{item.target} {item.series}".strip()
    s = item.statistics
    parts = []
    if s:
        direction = "worse" if (s.get("change_pct") or 0) > 0 else "better"
        than = f"the level before build {item.change_build}" if item.change_build else "the baseline"
        parts.append(
            f"{name} is {pct(abs(s['change_pct']) if s['change_pct'] is not None else None, False)} "
            f"{direction} than {than} (p {p_value(s['p_value'])}, q {p_value(s['q_value'])}, "
            f"g {number(s['effect_size'])})"
        )
    elif item.anomaly:
        score = item.anomaly.get("score", item.anomaly.get("max_score"))
        parts.append(f"{name}: anomaly score {number(score)}")
    else:
        parts.append(name)
    if item.budget and not item.budget["passed"]:
        parts.append(
            f"budget {item.budget['statistic']} {number(item.budget['observed'])} "
            f"(max {number(item.budget['max'])}, min {number(item.budget['min'])})"
        )
    tier = f"{item.severity}" + (f" (gate: {item.gate})" if item.gate else "")
    return f"{'; '.join(parts)}: {item.verdict.upper()}, tier {tier}" + (f" - {item.reason}" if item.reason else "")


def item_details(item: ReportItem) -> str:
    """Several lines: the numbers, the likely cause and the recommendations."""
    lines = [item_headline(item)]
    if item.statistics:
        s = item.statistics
        lines.append(
            f"test {s['test']}; baseline mean {number(s['baseline_mean'])}, candidate mean "
            f"{number(s['candidate_mean'])}; change (positive = worse) {change_text(item)}; n {s['n_baseline']}/"
            f"{s['n_candidate']}"
        )
    if item.baseline_source:
        lines.append(f"baseline: {item.baseline_source}")
    if item.anomaly:
        lines.append(
            "anomaly: " + ", ".join(f"{k} {number(v) if isinstance(v, float) else v}" for k, v in item.anomaly.items())
        )
    if item.change_start is not None:
        lines.append(f"change start: {rfc3339(item.change_start)}")
    if item.change_build is not None:
        lines.append(f"change build: {item.change_build} (the first build at the new level)")
    if item.change_points:
        history = "; ".join(f"{c.build} {c.change_pct:+.1f}% (p {p_value(c.p_value)})" for c in item.change_points)
        lines.append(f"change points (positive = worse): {history}")
    if item.likely_cause:
        cause = item.likely_cause
        at = f" at {rfc3339(cause.timestamp)}" if cause.timestamp is not None else ""
        lines.append(f"likely cause: {cause.description}{at}")
    lines.extend(f"- {r.action}: {r.text}" for r in item.recommendations)
    return "\n".join(lines)
