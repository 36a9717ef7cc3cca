"""What the best possible detector could do on the accuracy bench's series: a one-sided CUSUM tuned to the exact
shift, with a perfect baseline (i.i.d. Gaussian noise), at the false-alarm target of issue 3.

    python bench/cusum_bound.py

``recall_at_rate`` gives the same bound at any false-alarm rate: bench/verdict_sweep.py prints it beside each
measured row, at the false-verdict rate the product showed there.

CUSUM is the optimal sequential detector of a known mean shift (Lorden 1971, Moustakides 1986): no method has a
shorter worst-case detection delay at the same average run length between false alarms. Its threshold is set
with Siegmund's approximation so that false alarms come once per 288,000 samples (one per 1,000 series-days at
5-minute resolution); detection delays are simulated (20,000 runs each, fixed seed). Prints the recall within
1 h and 3 h per noise level and step size, to compare with bench/accuracy.py.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

SAMPLES_BETWEEN_FALSE_ALARMS = 288_000  # one per 1,000 series-days of 5-minute samples
STEP_MINUTES = 5
CASES = [(0.03, 0.05), (0.045, 0.05), (0.06, 0.05), (0.03, 0.10), (0.045, 0.10), (0.06, 0.10)]


def siegmund_run_length(drift: float, barrier: float) -> float:
    """Average run length of a CUSUM whose increments have mean ``drift`` (unit variance), barrier h + 1.166."""
    return (np.exp(-2 * drift * barrier) + 2 * drift * barrier - 1) / (2 * drift * drift)


def threshold(k: float, samples_between_false_alarms: float = SAMPLES_BETWEEN_FALSE_ALARMS) -> float:
    with np.errstate(over="ignore"):  # exp(2 k b) overflows to inf far above the root: the sign is all brentq needs
        barrier = brentq(lambda b: siegmund_run_length(-k, b) - samples_between_false_alarms, 0.1, 500.0)
    return barrier - 1.166


def simulated_delays(shift: float, k: float, h: float, runs: int, rng: np.random.Generator) -> np.ndarray:
    """Samples from the change to the alarm, the statistic starting at 0 when the change starts."""
    statistic, delays, waiting = np.zeros(runs), np.zeros(runs, dtype=np.int64), np.ones(runs, dtype=bool)
    sample = 0
    while waiting.any():
        sample += 1
        statistic[waiting] = np.maximum(0.0, statistic[waiting] + rng.normal(shift, 1.0, waiting.sum()) - k)
        alarmed = waiting & (statistic > h)
        delays[alarmed], waiting = sample, waiting & ~alarmed
    return delays * STEP_MINUTES


def recall_at_rate(false_per_1000_days: float, noises: np.ndarray, step: float, minutes: float,
                   runs: int = 4000) -> float:  # fmt: skip
    """The optimal CUSUM's recall of a ``step`` (relative) within ``minutes``, averaged over series with the
    given per-sample ``noises``, when its threshold gives ``false_per_1000_days`` false alarms per 1,000
    series-days of 5-minute samples (bench/verdict_sweep.py prints it beside each measured row). The noises are
    rounded to a grid of 0.1% so each level is simulated once (fixed seed)."""
    between = SAMPLES_BETWEEN_FALSE_ALARMS / max(false_per_1000_days, 1e-3)
    levels, counts = np.unique(np.round(np.asarray(noises, dtype=float), 3), return_counts=True)
    found = 0.0
    for noise, count in zip(levels, counts, strict=True):
        shift = step / noise
        delays = simulated_delays(shift, shift / 2, threshold(shift / 2, between), runs, np.random.default_rng(0))
        found += count * np.mean(delays <= minutes)
    return found / counts.sum()


def main() -> None:
    rng = np.random.default_rng(0)
    print("noise  step  threshold h  mean delay  p99 delay  within 1 h  within 3 h")
    for noise, step in CASES:
        shift = step / noise  # in noise standard deviations
        k = shift / 2
        h = threshold(k)
        delays = simulated_delays(shift, k, h, 20_000, rng)
        print(
            f"{noise:5.1%} {step:5.0%} {h:12.2f} {delays.mean():8.0f} min {np.percentile(delays, 99):6.0f} min"
            f" {np.mean(delays <= 60):10.1%} {np.mean(delays <= 180):10.1%}"
        )


if __name__ == "__main__":
    main()
