"""A Markdown summary sized for a pull-request comment: the verdict, the worst series first (change %,
confidence interval, p and q values, tier), what to do about each regression, the rest folded away.

GitHub caps comments at 65,536 characters; the table stops at ``max_rows`` and says how many were left out.
"""

from __future__ import annotations

from analyzer.gate.check import FAIL, PASS, UNDECIDED, WARN
from analyzer.gate.reports.model import Report, ReportItem
from analyzer.gate.reports.text import change_text, number, p_value
from analyzer.gate.timewindows import rfc3339

ICONS = {
    FAIL: ":x: fail",
    WARN: ":warning: warn",
    UNDECIDED: ":grey_question: undecided",
    PASS: ":white_check_mark: pass",
}
HEADLINES = {
    PASS: "no regression at or above the gate",
    FAIL: "regression at or above the gate: failing",
    UNDECIDED: "could not decide",
    WARN: "anomalies found",
}


CHANGE_HEADER = "change [95% CI], + = worse"
SIGN_NOTE = (
    "Changes are signed so that **positive means worse** in the metric's direction (a throughput that dropped 20% "
    "reads +20.0%)."
)


def _context(report: Report) -> list[str]:
    """What was compared with what, the gate, the warnings and the sign convention."""
    settings = report.settings
    lines = []
    if report.kind == "check" and settings.get("mode") == "builds":
        since = f" from build `{settings['since']}`" if settings.get("since") else ""
        lines.append(
            f"\nBuild history `{settings['builds_file']}`{since}: change points at p <= {settings['change_alpha']}, "
            f"the gate acts on those at p <= {settings['gate_alpha']}; gate `{settings['fail_on']}`, test "
            f"{settings['test']}, FDR {settings['alpha']} (Benjamini-Hochberg); exit code {report.exit_code}."
        )
    elif report.kind == "check":
        baseline = settings["baseline"]["spec"] if settings.get("baseline") else settings["mode"]
        selectors = (
            f"; selectors `{settings['baseline_selector']}` -> `{settings['candidate_selector']}`"
            if settings.get("candidate_selector") or settings.get("baseline_selector")
            else ""
        )
        lines.append(
            f"\nCandidate `{settings['candidate']['spec']}` vs baseline `{baseline}`{selectors}; "
            f"gate `{settings['fail_on']}`, test {settings['test']}, FDR {settings['alpha']} "
            f"(Benjamini-Hochberg); exit code {report.exit_code}."
        )
    lines += [f"\n> **warning**: {_cell(w)}" for w in report.warnings]
    if report.kind == "check":
        lines.append(f"\n{SIGN_NOTE}")
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(item: ReportItem) -> str:
    s = item.statistics or {}
    if item.anomaly is not None:
        score = item.anomaly.get("score", item.anomaly.get("max_score"))
        measure, p, q = f"score {number(score)}", "", ""
    else:
        measure, p, q = change_text(item), p_value(s.get("p_value")), p_value(s.get("q_value"))
    budget = ""
    if item.budget:
        budget = f"{item.budget['statistic']} {number(item.budget['observed'])}" + (
            "" if item.budget["passed"] else " over"
        )
    tier = item.severity + (f" / {item.gate}" if item.gate else "")
    where = item.series or (f"`{item.change_build}`" if item.change_build else "")
    cells = [
        ICONS.get(item.verdict, item.verdict),
        f"`{item.target}`",
        f"`{where}`" if item.series else where,
        measure,
        p,
        q,
        tier,
        budget,
        item.reason,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render(report: Report, max_rows: int = 25, max_recommended: int = 25) -> str:
    counts = report.counts()
    lines = [f"### Perf Sentinel {report.kind}: {HEADLINES.get(report.verdict, report.verdict)}", ""]
    lines.append(", ".join(f"**{n}** {v}" for v, n in counts.items() if n) or "no series checked")
    lines += _context(report)
    for error in report.errors:
        lines.append(f"\n> **{error['target']}**: {error['kind']}: {_cell(error['message'][:300])}")
    ordered = [i for i in report.worst_first() if i.verdict != PASS]
    passed = [i for i in report.worst_first() if i.verdict == PASS]
    builds = report.settings.get("mode") == "builds"
    header = [
        f"| verdict | {'metric' if builds else 'target'} | {'change build' if builds else 'series'} "
        f"| {CHANGE_HEADER} | p | q | tier / gate | budget | reason |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    if ordered:
        lines += ["", *header, *(_row(i) for i in ordered[:max_rows])]
        if len(ordered) > max_rows:
            lines.append(f"\n... and {len(ordered) - max_rows} more not passing (see the JSON or HTML report).")
    lines += _recommendations(ordered[:max_recommended])
    advised = sum(1 for i in ordered if i.recommendations)
    if advised > max_recommended:
        lines.append(
            f"\n... recommendations for {advised - max_recommended} more series are in the HTML and JSON reports."
        )
    if passed:
        lines += [
            "",
            f"<details><summary>{len(passed)} passing</summary>",
            "",
            *header,
            *(_row(i) for i in passed[:max_rows]),
        ]
        if len(passed) > max_rows:
            lines.append(f"\n... and {len(passed) - max_rows} more.")
        lines += ["", "</details>"]
    lines += ["", f"<sub>perfsentinel, {rfc3339(report.generated_at)}</sub>", ""]
    return "\n".join(lines)


def _recommendations(items: list[ReportItem]) -> list[str]:
    lines = []
    for item in items:
        if not item.recommendations:
            continue
        lines += ["", f"**{item.target}** `{item.series}`" if item.series else f"**{item.target}**"]
        lines += [f"- *{r.action.replace('_', ' ')}*: {r.text}" for r in item.recommendations]
    return (["", "#### What to do"] + lines) if lines else []
