"""What one analysis produces: a result per series, and the snapshot the exporter publishes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

OK = "ok"
INSUFFICIENT_DATA = "insufficient_data"
ERROR = "error"
STATUSES = (OK, INSUFFICIENT_DATA, ERROR)

# reasons besides the data checks in analyzer.models.quality
PENDING = "pending"  # seen, no baseline fitted yet
STALE = "stale"  # baseline exists, but no sample inside the score lookback
FIT_FAILED = "fit_failed"
QUERY_FAILED = "query_failed"
SCORE_FAILED = "score_failed"  # a bug while scoring the target (logged with its traceback)
PROMETHEUS_UNAVAILABLE = "prometheus_unavailable"


@dataclass
class SeriesResult:
    target: str
    labels: dict[str, str]
    status: str
    reason: str = ""
    timestamp: float | None = None
    value: float | None = None
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    anomaly_score: float | None = None
    model: str | None = None
    seasonality: str | None = None
    note: str = ""
    # regression verdict (analyzer.detection.regression); None when not evaluated
    drift_score: float | None = None
    verdict: str | None = None  # none | potential | minor | significant | critical | insufficient_data
    severity: int | None = None  # 0 none/potential, 1 minor, 2 significant, 3 critical
    change_pct: float | None = None  # worse-signed, % of the expected value
    change_ci_low: float | None = None
    change_ci_high: float | None = None
    p_value: float | None = None  # raw p-value of the configured test
    q_value: float | None = None  # Benjamini-Hochberg adjusted over the run
    effect_size: float | None = None  # Hedges' g, worse-signed
    confidence: float | None = None  # 1 - q_value
    regression_start: float | None = None
    regression_event: str | None = None
    verdict_reason: str = ""
    trend: str | None = None  # improving | stable | degrading | volatile
    trend_p_value: float | None = None
    projected_change_pct: float | None = None  # over the next day, worse-signed
    # calibrated alert thresholds (analyzer.detection.budget), None without a baseline; and how often each statistic
    # crossed the threshold in force over the last 14 days (None in the first day of the record)
    anomaly_threshold: float | None = None
    novelty_score: float | None = None  # analyzer.detection.novelty; None without a novelty reference
    novelty_threshold: float | None = None
    drift_threshold: float | None = None
    regression_threshold_pct: float | None = None  # the change % a regression alert needs (for the regression's age)
    anomaly_crossings_per_day: float | None = None
    novelty_crossings_per_day: float | None = None
    drift_crossings_per_day: float | None = None
    regression_crossings_per_day: float | None = None
    # the baseline scored against (analyzer.state.lifecycle); None without a baseline
    baseline_version: int | None = None
    baseline_age_seconds: float | None = None
    baseline_reason: str | None = None  # initial | refresh | scheduled | improvement | accepted | reset
    baseline_trained_from: float | None = None
    baseline_trained_to: float | None = None
    # history the series had at its last refit, first sample to the end of the window (the warm-up's progress)
    history_seconds: float | None = None
    # while it warms up (too_short): when its history reaches the target's min_history, so that the first refit pass
    # after it (refit_every / 4 later at most) fits a baseline and scoring starts; None otherwise
    scoring_start: float | None = None

    def to_json(self) -> dict:
        return {key: _json_number(value) for key, value in asdict(self).items()}


def _json_number(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    return value


@dataclass
class TargetOutcome:
    """How reading one target went in the last score run."""

    target: str
    success: bool
    error: str = ""
    series: int = 0  # known series of the target (returned now or analysed before)
    returned: int | None = None  # series the query returned in this run (None when it failed)


@dataclass
class Snapshot:
    completed_at: float
    results: list[SeriesResult] = field(default_factory=list)
    targets: list[TargetOutcome] = field(default_factory=list)
