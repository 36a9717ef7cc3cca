"""One report model for ``check``, ``once`` and ``backtest``; every writer (JSON, JUnit, Markdown, HTML)
renders this and nothing else, so the four formats always say the same thing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from analyzer.gate.check import FAIL, PASS, UNDECIDED, WARN, PlotData
from analyzer.gate.recommendations import Event, Recommendation

SCHEMA = "perfsentinel.report/v1"
VERDICT_ORDER = {FAIL: 0, WARN: 1, UNDECIDED: 2, PASS: 3}


@dataclass
class ReportItem:
    """One series (check, once) or one replayed file (backtest)."""

    target: str
    series: str
    labels: dict[str, str]
    verdict: str  # pass | warn | fail | undecided
    severity: str = "none"  # none | minor | significant | critical
    gate: str | None = None  # the tier that fails the build for this series (check only)
    reason: str = ""
    statistics: dict | None = None
    budget: dict | None = None
    anomaly: dict | None = None
    change_start: float | None = None
    likely_cause: Event | None = None
    recommendations: list[Recommendation] = field(default_factory=list)
    plot: PlotData | None = None
    duration: float = 0.0  # seconds spent on this item, for JUnit's time attribute
    baseline_source: str = ""  # check: window | selector | store vN | fitted here on ... | build history
    change_build: str | None = None  # check --builds: the first build at the new level
    change_points: list | None = None  # check --builds: every change of the history (builds.BuildChange)

    @property
    def change_pct(self) -> float:
        value = (self.statistics or {}).get("change_pct")
        return value if isinstance(value, float) and math.isfinite(value) else -math.inf

    def sort_key(self) -> tuple:
        """Worst first: verdict, then the largest worse-signed change, then the highest anomaly score."""
        score = (self.anomaly or {}).get("max_score", (self.anomaly or {}).get("score")) or 0.0
        return (VERDICT_ORDER.get(self.verdict, 9), -self.change_pct, -score, self.target, self.series)


@dataclass
class Report:
    kind: str  # check | once | backtest
    generated_at: float
    verdict: str  # pass | fail | undecided: the run as a whole
    exit_code: int
    duration: float
    settings: dict
    items: list[ReportItem]
    errors: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a baseline window over other hours than the candidate

    def worst_first(self) -> list[ReportItem]:
        return sorted(self.items, key=ReportItem.sort_key)

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for i in self.items if i.verdict == v) for v in (FAIL, WARN, UNDECIDED, PASS)}

    @property
    def title(self) -> str:
        return {"check": "Performance check", "once": "Anomaly analysis", "backtest": "Backtest"}.get(
            self.kind, self.kind
        )
