"""``model: auto``: pick a model per target from the history length and a short holdout on its tail.

The rule (README "Baselines"):

1. history shorter than ``MIN_SELECT_HISTORY`` (4 days): ``profile``; too little to hold a day out.
2. otherwise each candidate is fitted on the history minus its last ``HOLDOUT_SECONDS`` (1 day) and
   forecasts that day; candidates are ``profile`` and ``stl``, plus ``prophet`` once the history covers
   ``PROPHET_MIN_HISTORY`` (14 days: two weekly cycles, below that its weekly terms fit noise).
3. the error is the median absolute error over the holdout (robust: a spike in the last day does not decide),
   summed over up to ``SAMPLE_SERIES`` series of the target; the lowest wins, but a slower model must beat a
   faster one by ``MARGIN`` (10%) to be chosen (order: profile, stl, prophet).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from analyzer.models.base import DAY, BaselineModel, FitContext, FitError

MIN_SELECT_HISTORY = 4 * DAY
PROPHET_MIN_HISTORY = 14 * DAY
HOLDOUT_SECONDS = DAY
SAMPLE_SERIES = 3
MARGIN = 0.10
COST_ORDER = ("profile", "stl", "prophet")


@dataclass
class Choice:
    model: str
    errors: dict[str, float]
    reason: str


def holdout_error(model: BaselineModel, timestamps: np.ndarray, values: np.ndarray, context: FitContext) -> float:
    split = timestamps < timestamps[-1] - HOLDOUT_SECONDS
    baseline = model.fit(timestamps[split], values[split], context)
    held = ~split & np.isfinite(values)
    return float(np.median(np.abs(values[held] - baseline.predict(timestamps[held]).expected)))


def choose_model(
    histories: Sequence[tuple[np.ndarray, np.ndarray]],
    context: FitContext,
    get_model: Callable[[str], BaselineModel],
) -> Choice:
    """The model for a target, from up to ``SAMPLE_SERIES`` of its (timestamps, values) histories."""
    sample = [(t, v) for t, v in histories if len(t) > 1][:SAMPLE_SERIES]
    if not sample:
        return Choice("profile", {}, "no history")
    span = max(float(t[-1] - t[0]) for t, _ in sample)
    if span < MIN_SELECT_HISTORY:
        return Choice("profile", {}, f"history {span / DAY:.1f}d < {MIN_SELECT_HISTORY / DAY:g}d")
    candidates = [m for m in COST_ORDER if m != "prophet" or span >= PROPHET_MIN_HISTORY]
    errors: dict[str, float] = {}
    for name in candidates:
        try:
            errors[name] = sum(holdout_error(get_model(name), t, v, context) for t, v in sample)
        except (FitError, ValueError, np.linalg.LinAlgError):
            continue
    if not errors:
        return Choice("profile", errors, "every candidate failed on the holdout")
    best = min(errors, key=errors.__getitem__)
    chosen = next(m for m in errors if errors[m] <= errors[best] * (1 + MARGIN))  # cheapest close to the best
    return Choice(chosen, errors, "lowest holdout error" + ("" if chosen == best else " within 10% (cheaper)"))
