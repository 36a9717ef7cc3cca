"""NAB score of Perf Sentinel's default alerting on ``../shared/nab-dev`` (Numenta Anomaly Benchmark, 35 files).

    python bench/nab.py [--results DIR] [--output DIR] [--nab ../shared/nab-dev]

Without ``--results`` it runs ``perfsentinel backtest --input NAB/data --output DIR`` first (defaults: auto
model, refit every hour; about 6 CPU-minutes). Then it prints:

* the NAB table (standard / low-FP / low-FN, window precision / recall / F1, false-positive rows) for the
  backtest's ``alert`` column (the notifications of every shipped per-series alert rule), for the anomaly, the
  regression and the drift rules alone, and for the raw ``anomaly_score`` (fixed threshold 1, and swept as NAB does);
* the NAB standard score at neighbouring rule parameters, one changed at a time, to show how much of the score
  is tuning (recomputed from the same backtest output with analyzer.episodes, no refits). About 1.5 min;
* the anomaly rules with an anomaly-likelihood gate (as Numenta's detectors use) instead of the new high: the
  mean score of the last 15 minutes is more than k standard deviations above the mean of the window before it.

The scorer is ``../shared/tools/nab_score.py`` (not part of the project).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd

from analyzer import episodes
from analyzer.episodes import SHIPPED_RULES, AlertRule

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
COLUMNS = ("anomaly_score", "severity", "drift_score")
ANOMALY = tuple(r for r in SHIPPED_RULES if r.column == "anomaly_score")
REGRESSION = tuple(r for r in SHIPPED_RULES if r.column == "severity")
DRIFT = tuple(r for r in SHIPPED_RULES if r.column == "drift_score")


def load_scorer(nab: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_score", nab.parent / "tools" / "nab_score.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = module  # its dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def run_backtest(nab: Path, output: Path) -> float:
    started = time.monotonic()
    command = [sys.executable, "-m", "analyzer.cli", "backtest", "--input", str(nab / "data"), "--output", str(output)]
    subprocess.run(command, check=True)
    return time.monotonic() - started


def read_results(corpus: dict, results: Path) -> dict[str, pd.DataFrame]:
    frames = {}
    for rel, info in corpus.items():
        frame = pd.read_csv(results / rel)
        if len(frame) != info.n:
            raise SystemExit(f"{results / rel}: {len(frame)} rows, the data file has {info.n}")
        frame["t"] = (pd.to_datetime(frame["timestamp"]) - pd.Timestamp(0)).dt.total_seconds()
        frames[rel] = frame
    return frames


def notified(frames: dict[str, pd.DataFrame], rules: tuple[AlertRule, ...]) -> dict[str, np.ndarray]:
    return {rel: episodes.notifications(f, f["t"].to_numpy(), rules).astype(float) for rel, f in frames.items()}


def evaluate(scorer: ModuleType, corpus: dict, scores: dict[str, np.ndarray], threshold: float | None) -> dict:
    result = scorer.evaluate(corpus, scores, threshold)
    profiles, window = result["profiles"], result["window_metrics"]
    return {"standard": profiles["standard"]["score"], "low_fp": profiles["reward_low_FP_rate"]["score"],
            "low_fn": profiles["reward_low_FN_rate"]["score"], "threshold": profiles["standard"]["threshold"],
            **{k: window[k] for k in ("precision", "recall", "f1", "tp_windows", "fn_windows", "fp_rows")}}  # fmt: skip


def print_table(rows: list[tuple[str, str, dict]]) -> None:
    print("| detections | threshold | NAB standard | low FP | low FN | window P / R / F1 | TP / FN windows | FP rows |")
    print("|---|---|---|---|---|---|---|---|")
    for name, threshold, r in rows:
        print(f"| {name} | {threshold} | **{r['standard']:.1f}** | {r['low_fp']:.1f} | {r['low_fn']:.1f} | "
              f"{r['precision']:.3f} / {r['recall']:.2f} / {r['f1']:.3f} | {r['tp_windows']} / {r['fn_windows']} | "
              f"{r['fp_rows']} |")  # fmt: skip


def variants() -> list[tuple[str, dict]]:
    """One parameter away from the shipped anomaly rules (and the shared keep_firing_for)."""
    gate = ANOMALY[0].new_high
    return [("new-high window 6h", {"new_high": dataclasses.replace(gate, window=6 * 3600.0)}),
            ("new-high window 3d", {"new_high": dataclasses.replace(gate, window=3 * 86400.0)}),
            ("new-high window 7d", {"new_high": dataclasses.replace(gate, window=7 * 86400.0)}),
            ("recent 5m", {"new_high": dataclasses.replace(gate, recent=300.0)}),
            ("recent 30m", {"new_high": dataclasses.replace(gate, recent=1800.0)}),
            ("no new-high gate", {"new_high": None}),
            ("for 10m", {"hold": 600.0}),
            ("for 15m, no gate, no keep (old PerfSentinelAnomaly)", {"hold": 900.0, "new_high": None,
                                                                     "keep_firing_for": 0.0}),
            ("keep_firing_for 0", {"keep_firing_for": 0.0}),
            ("keep_firing_for 6h", {"keep_firing_for": 6 * 3600.0})]  # fmt: skip


def sensitivity(scorer: ModuleType, corpus: dict, frames: dict[str, pd.DataFrame]) -> None:
    print("\nNAB standard one parameter away from the default anomaly rules (same backtest output):\n")
    print("| anomaly rules | anomaly rules alone | all rules (alert) |")
    print("|---|---|---|")
    cases = [("shipped (new high over 1d, recent 15m, for 5m, keep 1h)", {})] + variants()
    cases += [("info threshold 1.5", {"info_above": 1.5}), ("info threshold 2", {"info_above": 2.0})]
    for name, change in cases:
        info_above = change.pop("info_above", None)
        rules = tuple(dataclasses.replace(r, **change) for r in ANOMALY)
        if info_above is not None:
            rules = (dataclasses.replace(rules[0], above=info_above), *rules[1:])
        alone = evaluate(scorer, corpus, notified(frames, rules), 0.5)["standard"]
        union = evaluate(scorer, corpus, notified(frames, rules + REGRESSION + DRIFT), 0.5)["standard"]
        print(f"| {name} | {alone:.1f} | {union:.1f} |")


def sustained_sensitivity(scorer: ModuleType, corpus: dict, frames: dict[str, pd.DataFrame]) -> None:
    print("\nNAB standard of all rules (alert) with other regression/drift keep_firing_for (shipped: 3h):\n")
    print("| regression and drift keep_firing_for | all rules (alert) |")
    print("|---|---|")
    for hours in (0, 1, 3, 6, 24):
        sustained = tuple(dataclasses.replace(r, keep_firing_for=hours * 3600.0) for r in REGRESSION + DRIFT)
        score = evaluate(scorer, corpus, notified(frames, ANOMALY + sustained), 0.5)["standard"]
        print(f"| {hours}h | {score:.1f} |")


def likelihood_gate(
    scores: np.ndarray, times: np.ndarray, k: float, window: float, recent: float = 900.0
) -> np.ndarray:
    """Per row (``times`` ascending): ``avg_over_time(s[recent]) - avg_over_time(s[window] offset recent) >
    k * stddev_over_time(s[window] offset recent)``, or the earlier range holds no sample."""
    finite = np.isfinite(scores)
    values = np.where(finite, scores, 0.0)
    sums, squares, counts = (np.r_[0.0, np.cumsum(a)] for a in (values, values * values, finite.astype(float)))
    end = np.arange(1, len(times) + 1)
    middle = np.searchsorted(times, times - recent, side="right")
    start = np.searchsorted(times, times - recent - window, side="right")
    recent_mean = (sums[end] - sums[middle]) / np.maximum(counts[end] - counts[middle], 1)
    prior_n = counts[middle] - counts[start]
    prior_mean = (sums[middle] - sums[start]) / np.maximum(prior_n, 1)
    prior_sd = np.sqrt(np.maximum((squares[middle] - squares[start]) / np.maximum(prior_n, 1) - prior_mean**2, 0))
    return (prior_n == 0) | (recent_mean - prior_mean > k * prior_sd)


def likelihood_notified(frames: dict[str, pd.DataFrame], k: float, window: float) -> dict[str, np.ndarray]:
    """Notifications of the shipped anomaly rules (thresholds, for, keep_firing_for) with the likelihood gate in
    place of the new high: the score is masked (absent) on the rows the gate rejects."""
    gated = {}
    for rel, frame in frames.items():
        times, scores = frame["t"].to_numpy(), frame["anomaly_score"].to_numpy(dtype=float)
        order = np.argsort(times, kind="stable")
        gate = np.empty(len(frame), dtype=bool)
        gate[order] = likelihood_gate(scores[order], times[order], k, window)
        gated[rel] = frame.assign(anomaly_score=np.where(gate, scores, np.nan))
    return notified(gated, tuple(dataclasses.replace(rule, new_high=None) for rule in ANOMALY))


def likelihood_sensitivity(scorer: ModuleType, corpus: dict, frames: dict[str, pd.DataFrame]) -> None:
    print("\nNAB standard with an anomaly-likelihood gate instead of the new high (same backtest output):\n")
    print("| gate | anomaly rules alone (TP windows / FP rows) | all rules (alert) |")
    print("|---|---|---|")
    sustained = notified(frames, REGRESSION + DRIFT)
    for k, days in ((2, 1), (3, 1), (4, 1), (2, 3), (3, 3), (4, 3)):
        alone = likelihood_notified(frames, k, days * 86400.0)
        a = evaluate(scorer, corpus, alone, 0.5)
        union = evaluate(scorer, corpus, {rel: np.maximum(alone[rel], sustained[rel]) for rel in alone}, 0.5)
        print(
            f"| 15m mean > {days}d mean + {k} sd | {a['standard']:.1f} ({a['tp_windows']} / {a['fp_rows']}) | "
            f"{union['standard']:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=SHARED / "nab-dev")
    parser.add_argument("--results", type=Path, help="reuse a backtest output folder instead of running one")
    parser.add_argument("--output", type=Path, help="where the backtest writes (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not (args.nab / "labels" / "combined_windows.json").exists():
        print(f"no NAB corpus at {args.nab}", file=sys.stderr)
        return 2
    scorer = load_scorer(args.nab)
    corpus = scorer.load_corpus(str(args.nab))
    results = args.results or args.output or Path(tempfile.mkdtemp(prefix="perfsentinel-nab-"))
    if args.results is None:
        print(f"backtest of {args.nab / 'data'} into {results}: {run_backtest(args.nab, results):.0f} s wall")
    frames = read_results(corpus, results)
    shipped = notified(frames, SHIPPED_RULES)
    if all("alert" in f for f in frames.values()):
        mismatched = [rel for rel, f in frames.items() if not np.array_equal(f["alert"].to_numpy(), shipped[rel])]
        print(f"alert column == analyzer.episodes over the shipped rules: {mismatched or 'yes'}")
    windows = scorer.scorable_windows(corpus)
    rows_total = sum(info.n for info in corpus.values())
    print(f"{len(corpus)} files, {windows} scorable windows, {rows_total} rows; notifications (alert = 1): "
          f"{int(sum(a.sum() for a in shipped.values()))}\n")  # fmt: skip
    raw = {rel: f["anomaly_score"].to_numpy(dtype=float) for rel, f in frames.items()}
    rows = [("`alert`: every shipped per-series rule", "as given", evaluate(scorer, corpus, shipped, 0.5)),
            ("anomaly rules only", "as given", evaluate(scorer, corpus, notified(frames, ANOMALY), 0.5)),
            ("regression tier rules only", "as given", evaluate(scorer, corpus, notified(frames, REGRESSION), 0.5)),
            ("drift rule only", "as given", evaluate(scorer, corpus, notified(frames, DRIFT), 0.5)),
            ("`anomaly_score` per row", "1", evaluate(scorer, corpus, raw, 1.0))]  # fmt: skip
    swept = evaluate(scorer, corpus, raw, None)
    rows.append(("`anomaly_score` per row", f"swept ({swept['threshold']:.3g})", swept))
    print_table(rows)
    sensitivity(scorer, corpus, frames)
    sustained_sensitivity(scorer, corpus, frames)
    likelihood_sensitivity(scorer, corpus, frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
