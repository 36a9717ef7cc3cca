"""Forecast error and false alarms of the baselines on sparse series: generated seasonal series (28 days of
history, 5% noise, daily and weekly pattern) with a share of the samples removed, in holes of a given mean length.

    python bench/sparse.py [--models stl,profile] [--seeds 8]

Prints, per model, missing share and mean hole length: the RMS forecast error over the next day against the
noise-free signal (in % of the level; mean and worst over the seeds) and the share of that day's noisy samples
scored above the band (anomaly score > 1, `both` directions; the true rate is 0). This is what the default
``max_gap_ratio`` (0.8) rests on. About 20 seconds; the table of docs/accuracy.md is this command's output.
"""

from __future__ import annotations

import argparse

import numpy as np

from analyzer.detection.scoring import anomaly_scores
from analyzer.models import FitContext, FittedBaseline, get_model
from analyzer.synthetic import DAY, SyntheticSeries, generate, missing_in_holes

RATIOS = (0.0, 0.5, 0.7, 0.8, 0.9)
HOLES = (1, 24, 72)  # mean hole length in 5-minute samples: 5 min, 2 h, 6 h


def one_case(model: str, ratio: float, mean_hole: int, seed: int) -> tuple[float, float]:
    """(RMS relative forecast error, false-alarm share) for one generated series."""
    series = generate(days=29, seed=seed, noise=0.05)
    train = series.timestamps <= series.timestamps[-1] - DAY
    missing = missing_in_holes(int(train.sum()), ratio, mean_hole, np.random.default_rng(seed + 100))
    values = np.where(missing, np.nan, series.values[train])
    baseline = get_model(model).fit(series.timestamps[train], values, FitContext(step=300))
    return forecast_quality(baseline, series, ~train)


def forecast_quality(baseline: FittedBaseline, series: SyntheticSeries, future: np.ndarray) -> tuple[float, float]:
    """(RMS forecast error against the noise-free signal relative to it, share of the noisy samples outside the
    band) over the ``future`` samples of ``series``."""
    band = baseline.predict(series.timestamps[future])
    error = (band.expected - series.clean[future]) / series.clean[future]
    outside = anomaly_scores(series.values[future], band, "both") > 1
    return float(np.sqrt(np.mean(error**2))), float(np.mean(outside))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="stl,profile")
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args()
    print("| model | missing | mean hole | forecast error mean / worst | samples above the band |")
    print("|---|---|---|---|---|")
    for model in args.models.split(","):
        for mean_hole in HOLES:
            for ratio in RATIOS:
                cases = np.array([one_case(model, ratio, mean_hole, seed) for seed in range(args.seeds)])
                errors, alarms = cases[:, 0], cases[:, 1]
                print(f"| {model} | {ratio:.0%} | {mean_hole * 5} min | {100 * errors.mean():.1f}% / "
                      f"{100 * errors.max():.1f}% | {100 * alarms.mean():.2f}% |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
