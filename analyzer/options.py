"""Option types the configuration shares with the detection and the models, with no dependency of their own.

They live here, not beside the code that uses them, so that loading a configuration (``perfsentinel
validate-config``) imports neither scipy nor pandas nor statsmodels: ``analyzer.detection.stats`` and
``analyzer.models.prophet`` re-export them under their old names.
"""

from __future__ import annotations

from dataclasses import dataclass

TESTS = ("mannwhitney", "welch", "ks")  # the regression tests of analyzer.detection.stats
PROPHET_FIT_TIMEOUT = 60.0


@dataclass(frozen=True)
class SeverityThresholds:
    """Change in % of the expected value (worse-signed) at which each tier starts."""

    minor: float = 5.0
    significant: float = 15.0
    critical: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.minor <= self.significant <= self.critical:
            raise ValueError("severity thresholds must satisfy 0 <= minor <= significant <= critical")


@dataclass(frozen=True)
class ProphetOptions:
    """Per-target ``prophet:`` options (see analyzer.config)."""

    country_holidays: str | None = None
    changepoint_prior_scale: float = 0.05
    seasonality_prior_scale: float = 10.0
    seasonality_mode: str = "additive"
    uncertainty_samples: int = 0
    fit_timeout: float = PROPHET_FIT_TIMEOUT
    fit_resolution: float = 1800.0  # Prophet is fitted on means over these buckets; see ``bucket_means``
