"""What one analysis produces: a result per series, and the snapshot the exporter publishes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

OK = "ok"
INSUFFICIENT_DATA = "insufficient_data"
ERROR = "error"
STATUSES = (OK, INSUFFICIENT_DATA, ERROR)

# reasons besides the data checks in analyzer.quality
PENDING = "pending"  # seen, no baseline fitted yet
STALE = "stale"  # baseline exists, but no sample inside the score lookback
FIT_FAILED = "fit_failed"
QUERY_FAILED = "query_failed"
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
    series: int = 0


@dataclass
class Snapshot:
    completed_at: float
    results: list[SeriesResult] = field(default_factory=list)
    targets: list[TargetOutcome] = field(default_factory=list)
