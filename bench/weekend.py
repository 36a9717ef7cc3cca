"""Forecasts across a weekend with less than 21 days of history (no weekly period), where STL and the profile
model give the weekend its own daily shape when two weekends show one (``analyzer/models/weekend.py``).

    python bench/weekend.py [--models stl,profile] [--seeds 4]

Generated series (5% noise, daily pattern, a weekend dip of 0%, 5% or 15% of the level), 8, 14 or 20 days of
history, each fitted seven times so that every weekday is the forecast day once. Prints per model, dip and
history the RMS error of the next day's forecast against the noise-free signal (in % of the level; mean and
worst) and the share of that day's noisy samples outside the band (anomaly score > 1, `both`; the true rate is
0), then how many fits used a weekend shape on series without a weekend effect. About 30 seconds; the table of
docs/accuracy.md is this command's output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from analyzer.models import FitContext, get_model
from analyzer.synthetic import DAY, generate

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sparse import forecast_quality  # noqa: E402

DIPS = (0.15, 0.05, 0.0)
HISTORIES = (8, 14, 20)  # days; Prometheus keeps 15 by default
MONDAY = 1_767_571_200.0  # the generator's default end


def next_day(model: str, dip: float, days: int, seed: int) -> tuple[list[float], list[float]]:
    """(RMS relative errors, out-of-band shares) of the seven next-day forecasts of one generated series."""
    series = generate(days=days + 8, seed=seed, noise=0.05, weekend_dip=dip)
    errors, outside = [], []
    for ahead in range(7):
        cutoff = series.timestamps[-1] - (7 - ahead) * DAY
        train = (series.timestamps <= cutoff) & (series.timestamps > cutoff - days * DAY)
        day = (series.timestamps > cutoff) & (series.timestamps <= cutoff + DAY)
        baseline = get_model(model).fit(series.timestamps[train], series.values[train], FitContext(step=300))
        error, share = forecast_quality(baseline, series, day)
        errors.append(error)
        outside.append(share)
    return errors, outside


def splits_without_weekend_effect(model: str, seeds: int) -> tuple[int, int]:
    """(fits with a weekend shape, fits) on series without a weekend effect, 8-20 days, ending at any hour."""
    used = total = 0
    for seed in range(5 * seeds):
        for days in (8, 11, 14, 17, 20):
            series = generate(days=days, seed=seed, noise=0.05, weekend_dip=0.0, end=MONDAY - seed * 37_000)
            baseline = get_model(model).fit(series.timestamps, series.values, FitContext(step=300))
            used += baseline.seasonality.note.endswith("weekend shape")
            total += 1
    return used, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="stl,profile")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    print("| model | weekend dip | history | next-day forecast error mean / worst | samples outside the band |")
    print("|---|---|---|---|---|")
    for model in args.models.split(","):
        for dip in DIPS:
            for days in HISTORIES:
                runs = [next_day(model, dip, days, seed) for seed in range(args.seeds)]
                errors = np.concatenate([r[0] for r in runs])
                outside = np.concatenate([r[1] for r in runs])
                print(f"| {model} | {dip:.0%} | {days} d | {100 * errors.mean():.2f}% / {100 * errors.max():.2f}% | "
                      f"{100 * outside.mean():.2f}% |", flush=True)  # fmt: skip
    for model in args.models.split(","):
        used, total = splits_without_weekend_effect(model, args.seeds)
        print(f"{model}: a weekend shape on {used} of {total} fits of series without a weekend effect")


if __name__ == "__main__":
    main()
