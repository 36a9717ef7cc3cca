"""NAB score of the notifications Perf Sentinel's shipped alert rules would send, at the default configuration.

    python bench/nab.py [--results DIR] [--output DIR] [--nab ../shared/nab-dev] [--resample 1h]
                        [--set max_notifications_per_day=0.2 ...] [--config FILE]

Without ``--results`` it runs ``perfsentinel backtest --input NAB/data --output DIR`` first (defaults: auto
model, hourly refits; about 2.5 minutes on 2 cores for nab-dev). ``--set KEY=VALUE`` (YAML values, repeatable)
changes a target key of the defaults, e.g. the notification budget; ``--config FILE`` takes a Perf Sentinel config
whose first target's settings and refit cadence the backtest uses instead. ``--resample 15min`` or ``1h`` scores a
copy of the corpus averaged to that step, windows moved to the rows that hold them: the same series and labels at
another sampling step (coarser data, fewer rows; the scorer's probation and window rules apply to the new rows).

It prints:

* the NAB table (standard / low-FP / low-FN, window precision / recall / F1, false-positive rows, notifications
  per series-day) for the backtest's ``alert`` column (every shipped per-series rule), and for the anomaly, the
  novelty and the regression rules alone (``analyzer.detection.episodes`` on the same output);
* per category, the standard score of all rules beside the anomaly rule alone (the rules never subtract when
  the first is at least the second);
* variants of the rules on the same output (no recalibration): without the ``unless`` that keeps novelty and
  regression alerts quiet after an earlier alert, regression alerts without their calibrated change threshold,
  no novelty rule, and the drift alert that is not shipped since issue 28 (``DRIFT_ALERT``: the rules as they
  were with it, and it alone).

The scorer is ``../shared/tools/nab_score.py`` (not part of the project).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import yaml

from analyzer.commands.backtest import RULE_EVALUATION_INTERVAL
from analyzer.detection import episodes
from analyzer.detection.episodes import SHIPPED_RULES, AlertRule, AtLeast, Exceeds, Unless

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DAY = 86400.0
ANOMALY = tuple(r for r in SHIPPED_RULES if r.column == "anomaly_score")
NOVELTY = tuple(r for r in SHIPPED_RULES if r.column == "novelty_score")
REGRESSION = tuple(r for r in SHIPPED_RULES if r.column == "severity")
# The drift alert as it was shipped until issue 28 (measured, not shipped: docs/experiments.md): a drift score
# above the series' calibrated drift threshold and a level moved by at least 5%, held 1m, kept firing 3h, quiet
# for 6h after an anomaly or novelty alert; the regression tiers also stayed quiet after it (6h, critical ones 3h).
DRIFT_ALERT = AlertRule("PerfSentinelDrift", "drift_score", 60.0, episodes.SUSTAINED_KEEP,
                        at_least=AtLeast("change_pct", 5.0), exceeds=Exceeds("drift_score", "drift_threshold"),
                        unless=Unless(("PerfSentinelAnomaly", "PerfSentinelNovelty"), 6 * episodes.HOUR))  # fmt: skip


def with_drift_alert() -> tuple[AlertRule, ...]:
    """The shipped rules with the drift alert before the regression tiers, whose ``unless`` also names it."""

    def quiet_after_drift(rule: AlertRule) -> AlertRule:
        if rule.unless is None:
            return rule
        return dataclasses.replace(
            rule, unless=dataclasses.replace(rule.unless, rules=(*rule.unless.rules, DRIFT_ALERT.name))
        )

    tiers = tuple(quiet_after_drift(r) for r in REGRESSION)
    return (*ANOMALY, *NOVELTY, DRIFT_ALERT, *tiers)


def load_scorer(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("nab_score", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["nab_score"] = module  # its dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def resample(nab: Path, rule: str, destination: Path) -> Path:
    """A copy of the corpus with values averaged per ``rule`` bucket (empty buckets dropped, as NAB files have
    no empty rows) and each window's start and end moved to the first and last row inside it."""
    windows = json.loads((nab / "labels" / "combined_windows.json").read_text())
    moved = {}
    for path in sorted((nab / "data").rglob("*.csv")):
        rel = str(path.relative_to(nab / "data"))
        frame = pd.read_csv(path)
        series = pd.Series(frame["value"].to_numpy(), index=pd.to_datetime(frame["timestamp"]))
        coarse = series.groupby(series.index.floor(rule)).mean().dropna()
        out = destination / "data" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        stamps = coarse.index.strftime("%Y-%m-%d %H:%M:%S")
        pd.DataFrame({"timestamp": stamps, "value": coarse.to_numpy()}).to_csv(out, index=False)
        moved[rel] = [window_rows(coarse.index, start, end, rule) for start, end in windows[rel]]
    (destination / "labels").mkdir(parents=True, exist_ok=True)
    (destination / "labels" / "combined_windows.json").write_text(json.dumps(moved, indent=1))
    return destination


def window_rows(index: pd.DatetimeIndex, start: str, end: str, rule: str) -> list[str]:
    first = index[index >= pd.Timestamp(start).floor(rule)]
    last = index[index <= pd.Timestamp(end)]
    begin = first[0] if len(first) else index[-1]
    finish = max(last[-1] if len(last) else index[0], begin)
    return [f"{stamp:%Y-%m-%d %H:%M:%S}.000000" for stamp in (begin, finish)]


def run_backtest(data: Path, output: Path, config: Path | None = None) -> float:
    started = time.monotonic()
    command = [sys.executable, "-m", "analyzer", "backtest", "--input", str(data), "--output", str(output)]
    command += ["--config", str(config)] if config else []
    subprocess.run(command, check=True)
    return time.monotonic() - started


def config_with(settings: list[str], folder: Path) -> Path:
    """A config whose one target has the defaults but for ``settings`` (KEY=VALUE, YAML values), hourly refits as
    the backtest's defaults (its Prometheus is never asked)."""
    target = {"name": "backtest", "query": "backtest"}
    for item in settings:
        key, _, value = item.partition("=")
        target[key.strip()] = yaml.safe_load(value)
    config = {"prometheus": {"url": "http://127.0.0.1:9090"}, "schedule": {"refit_every": "1h"}, "targets": [target]}
    path = folder / "perfsentinel.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


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
    return {rel: episodes.notifications(f, f["t"].to_numpy(), rules, RULE_EVALUATION_INTERVAL).astype(float)
            for rel, f in frames.items()}  # fmt: skip


def scored_days(frames: dict[str, pd.DataFrame]) -> float:
    """Series-days with a baseline (rows with an expected value)."""
    total = 0.0
    for frame in frames.values():
        times = frame["t"].to_numpy()[np.isfinite(frame["expected"].to_numpy())]
        total += (times.max() - times.min()) / DAY if times.size else 0.0
    return total


def evaluate(scorer: ModuleType, corpus: dict, scores: dict[str, np.ndarray]) -> dict:
    result = scorer.evaluate(corpus, scores, 0.5)
    profiles, window = result["profiles"], result["window_metrics"]
    categories = {name: c["standard_score"] for name, c in result["per_category"].items()}
    return {"standard": profiles["standard"]["score"], "low_fp": profiles["reward_low_FP_rate"]["score"],
            "low_fn": profiles["reward_low_FN_rate"]["score"], "categories": categories,
            "notifications": int(sum(s.sum() for s in scores.values())),
            **{k: window[k] for k in ("precision", "recall", "f1", "tp_windows", "fn_windows", "fp_rows")}}  # fmt: skip


def print_table(rows: list[tuple[str, dict]], days: float) -> None:
    print("| alerts | NAB standard | low FP | low FN | window P / R / F1 | TP / FN windows | FP rows | "
          "notifications per series-day |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | **{r['standard']:.1f}** | {r['low_fp']:.1f} | {r['low_fn']:.1f} | "
              f"{r['precision']:.3f} / {r['recall']:.2f} / {r['f1']:.3f} | {r['tp_windows']} / {r['fn_windows']} | "
              f"{r['fp_rows']} | {r['notifications'] / days:.3f} |")  # fmt: skip


def print_categories(everything: dict, anomaly: dict, frames: dict[str, pd.DataFrame],
                     shipped: dict[str, np.ndarray]) -> None:  # fmt: skip
    print("\n| category | all rules | anomaly rule alone | all >= anomaly | notifications per series-day |")
    print("|---|---|---|---|---|")
    for category, score in everything["categories"].items():
        members = [rel for rel in frames if rel.split("/")[0] == category]
        days = scored_days({rel: frames[rel] for rel in members})
        rate = sum(shipped[rel].sum() for rel in members) / days if days else float("nan")
        alone = anomaly["categories"][category]
        if score is None:  # no window: only false positives to count
            print(f"| {category} | no windows | no windows | - | {rate:.3f} |")
            continue
        print(f"| {category} | {score:.1f} | {alone:.1f} | {'yes' if score >= alone - 1e-9 else 'NO'} | {rate:.3f} |")


def variants() -> list[tuple[str, tuple[AlertRule, ...]]]:
    return [
        ("without `unless` (novelty and every regression alert also after an earlier alert)",
         tuple(dataclasses.replace(r, unless=None) for r in SHIPPED_RULES)),
        ("regression alerts without their calibrated change threshold",
         tuple(dataclasses.replace(r, exceeds=None) if r.column == "severity" else r for r in SHIPPED_RULES)),
        ("every rule but the novelty rule", tuple(r for r in SHIPPED_RULES if r not in NOVELTY)),
        ("with the drift alert (shipped until issue 28)", with_drift_alert()),
        ("the drift alert alone (not shipped)", (DRIFT_ALERT,)),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=SHARED / "nab-dev")
    parser.add_argument("--scorer", type=Path, default=SHARED / "tools" / "nab_score.py")
    parser.add_argument("--results", type=Path, help="reuse a backtest output folder instead of running one")
    parser.add_argument("--output", type=Path, help="where the backtest writes (default: a temporary folder)")
    parser.add_argument("--resample", help="score the corpus averaged to this step (pandas rule: 15min, 1h)")
    settings = parser.add_mutually_exclusive_group()
    settings.add_argument("--config", type=Path, help="backtest with this config's first target (default: defaults)")
    settings.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a target key of the defaults for the backtest, e.g. max_notifications_per_day=0.2",
    )
    args = parser.parse_args(argv)
    if not (args.nab / "labels" / "combined_windows.json").exists() or not args.scorer.exists():
        print(f"no NAB corpus at {args.nab} or no scorer at {args.scorer}", file=sys.stderr)
        return 2
    nab = args.nab
    if args.resample:
        nab = resample(nab, args.resample, Path(tempfile.mkdtemp(prefix=f"nab-{args.resample}-")))
        print(f"corpus averaged to {args.resample} in {nab}")
    scorer = load_scorer(args.scorer)
    corpus = scorer.load_corpus(str(nab))
    results = args.results or args.output or Path(tempfile.mkdtemp(prefix="perfsentinel-nab-"))
    if args.results is None:
        config = config_with(args.set, Path(tempfile.mkdtemp(prefix="perfsentinel-nab-config-"))) if args.set else None
        seconds = run_backtest(nab / "data", results, config or args.config)
        print(f"backtest of {nab / 'data'} into {results}: {seconds:.0f} s wall")
    frames = read_results(corpus, results)
    shipped = notified(frames, SHIPPED_RULES)
    if all("alert" in f for f in frames.values()):
        mismatched = [rel for rel, f in frames.items() if not np.array_equal(f["alert"].to_numpy(), shipped[rel])]
        print(f"alert column == analyzer.detection.episodes over the shipped rules: {mismatched or 'yes'}")
    days = scored_days(frames)
    print(f"{len(corpus)} files, {scorer.scorable_windows(corpus)} scorable windows, "
          f"{sum(info.n for info in corpus.values())} rows, {days:.0f} scored series-days\n")  # fmt: skip
    everything = evaluate(scorer, corpus, shipped)
    anomaly = evaluate(scorer, corpus, notified(frames, ANOMALY))
    print_table([("every shipped per-series rule (`alert`)", everything), ("anomaly rule alone", anomaly),
                 ("novelty rule alone", evaluate(scorer, corpus, notified(frames, NOVELTY))),
                 ("regression tier rules alone", evaluate(scorer, corpus, notified(frames, REGRESSION)))],
                days)  # fmt: skip
    print_categories(everything, anomaly, frames, shipped)
    print("\nVariants of the rules on the same backtest output (thresholds as calibrated):\n")
    print_table([(name, evaluate(scorer, corpus, notified(frames, rules))) for name, rules in variants()], days)
    return 0


if __name__ == "__main__":
    sys.exit(main())
