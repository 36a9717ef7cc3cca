"""``perfsentinel check --builds`` beside Apache Otava on per-build histories with known change points.

    python bench/builds.py [--series 200] [--seeds-from 100000] [--otava-python /tmp/otava-venv/bin/python]

Two sets, the same input for every method:

* **generated**: ``--series`` histories of 200 builds for each of three cells: a step of 5%, a step of 10% (up or
  down at random, at a build drawn from 20-180), and no change. One value per build, Gaussian noise with an SD of
  2-5% of the level (drawn per history). Seeds ``--seeds-from`` on; the detector was tuned on seeds 0-9,999
  (``--seeds-from 0``) and on ``otava-test-data`` seeds 1-3, and is reported on seeds 100,000 on and suite seeds
  42 and 100-103 (``--suite-seeds``), so the figures are not fitted to the evaluation set.
* **otava-test-data**: the suite of synthetic series with known change points that Apache Otava's project
  publishes (``CombinationGenerator(lengths=[50, 500], seed).generate_all_test_cases()``: steps, a regression
  and its fix, several steps, outliers, variance and phase changes, banding, noise, and pairs of them, noise SD 0-10
  on a level of 100). Level shifts (step, regression start, regression end; labels at the same build counted once)
  are the changes to find; detections near an outlier, a variance or a phase change count neither way (a
  change of the mean is what both methods look for; ``all labels`` counts those too).

Per method (Perf Sentinel's ``find_change_points`` at the shipped settings, Otava's ``compute_change_points`` at its
defaults: window 50, p 0.001, and with ``min_magnitude`` 5%) over whole histories: recall within 1, 5 and 10
builds (a reported change at most that far from the true build; each true change matched once), change-build
accuracy (named at the exact build), within 2 builds, false alarms per 1,000 builds (reported changes more than 5
builds from every true change), precision and F1 (a match within 5 builds), time per history. ``oracle`` is the
maximum-likelihood location when one change is known to exist (the best any method can name it).

The gate, run as CI would run it after every build: for each worse step, the gate on the history up to 1, 2, 3, 5
and 10 builds at the new level (found: the latest build fails at ``--fail-on minor``, i.e. a worse change of at
least 5%); for the unchanged histories, the gate after each of their last 26 even builds (false failures per
1,000 gate runs). Otava's change points go through the same rule (``changepoints.latest_regression``, at least 5%).

Apache Otava and otava-test-data are not dependencies of Perf Sentinel: install them in a venv of their own
(``python -m venv /tmp/otava-venv && /tmp/otava-venv/bin/pip install apache-otava otava-test-data``; Otava pins
numpy 2.2); without it the Otava rows and the suite are skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analyzer.gate.builds import GATE_ALPHA
from analyzer.gate.changepoints import ChangePoint, cusum_statistic, find_change_points, latest_regression, merge

BUILDS = 200
STEP_RANGE = (20, 180)
NOISE = (0.02, 0.05)
SIZES = (0.05, 0.10)
TOLERANCE = 5  # a reported change within 5 builds of a true one is that change (precision, F1, false alarms)
RECALL_WITHIN = (1, 5, 10)
GATE_AFTER = (1, 2, 3, 5, 10)
NULL_GATE_ENDS = range(150, BUILDS + 1, 2)
MINOR = 5.0
LEVEL_SHIFTS = {"step", "regression_start", "regression_end"}


@dataclass
class History:
    name: str
    values: np.ndarray
    changes: list[int]  # true level shifts (first index at the new level)
    ignore: list[int] = field(default_factory=list)  # outliers, variance and phase changes: neither way
    noise: float = 0.0
    size: float = 0.0
    worse_direction: str = "lower_is_better"  # the direction in which the step is worse


def generated(seed: int, size: float) -> History:
    rng = np.random.default_rng(seed)
    noise = float(rng.uniform(*NOISE))
    values = 100.0 * (1.0 + noise * rng.standard_normal(BUILDS))
    if not size:
        return History(f"null-{seed}", values, [], noise=noise)
    at = int(rng.integers(STEP_RANGE[0], STEP_RANGE[1] + 1))
    up = bool(rng.random() < 0.5)
    values[at:] += 100.0 * size * (1 if up else -1)
    direction = "lower_is_better" if up else "higher_is_better"
    return History(f"step{size:.0%}-{seed}", values, [at], noise=noise, size=size, worse_direction=direction)


def generated_set(first_seed: int, count: int) -> list[History]:
    out = []
    for cell, size in enumerate((*SIZES, 0.0)):
        out += [generated(first_seed + cell * 1_000_000 + i, size) for i in range(count)]
    return out


# ---------------------------------------------------------------- methods
def perfsentinel(values: np.ndarray) -> list[int]:
    return [p.index for p in find_change_points(values)]


def oracle(values: np.ndarray) -> list[int]:
    """The maximum-likelihood location of one change, known to exist."""
    return [int(np.argmax(cusum_statistic(values))) + 1]


OTAVA_WORKER = """
import json, sys, time
from otava.analysis import compute_change_points
tasks = json.load(sys.stdin)
out = []
for task in tasks:
    started = time.perf_counter()
    found, _ = compute_change_points(task["values"], window_len=50, max_pvalue=0.001,
                                     min_magnitude=task["min_magnitude"])
    out.append({"points": [int(c.index) for c in found], "seconds": time.perf_counter() - started})
json.dump(out, sys.stdout)
"""

SUITE_WORKER = """
import json, sys
from otava_test_data.generators.combiner import CombinationGenerator
out = []
for seed in json.load(sys.stdin):
    for ts in CombinationGenerator(lengths=[50, 500], seed=seed).generate_all_test_cases():
        out.append({"name": f"{ts.generator_name} L{len(ts)} seed {seed}", "values": [float(v) for v in ts.data],
                    "labels": [[int(c.index), c.change_type] for c in ts.change_points]})
json.dump(out, sys.stdout)
"""


def run_worker(python: str, script: str, payload: object) -> object | None:
    try:
        done = subprocess.run([python, "-c", script], input=json.dumps(payload), capture_output=True, text=True,
                              timeout=7200, check=True)  # fmt: skip
    except subprocess.CalledProcessError as exc:
        print(f"worker failed: {exc.stderr[-800:]}", file=sys.stderr)
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"worker failed: {exc}", file=sys.stderr)
        return None
    return json.loads(done.stdout)


def otava(python: str, series: list[np.ndarray], min_magnitude: float) -> tuple[list[list[int]], float] | None:
    tasks = [{"values": [float(v) for v in s], "min_magnitude": min_magnitude} for s in series]
    answer = run_worker(python, OTAVA_WORKER, tasks)
    if answer is None:
        return None
    return [a["points"] for a in answer], float(np.mean([a["seconds"] for a in answer]))  # type: ignore[union-attr]


def timed(method, series: list[np.ndarray]) -> tuple[list[list[int]], float]:
    found, seconds = [], []
    for values in series:
        started = time.perf_counter()
        found.append(method(values))
        seconds.append(time.perf_counter() - started)
    return found, float(np.mean(seconds))


# ---------------------------------------------------------------- scoring
@dataclass
class Score:
    true: int = 0
    within: dict[int, int] = field(default_factory=lambda: {k: 0 for k in (0, 1, 2, *RECALL_WITHIN)})
    matched: int = 0
    reported: int = 0
    false: int = 0
    builds: int = 0

    def add(self, history: History, found: list[int]) -> None:
        truth = sorted(set(history.changes))
        self.true += len(truth)
        self.builds += history.values.size
        for k in self.within:
            self.within[k] += _matches(found, truth, k)
        matched = _matches(found, truth, TOLERANCE)
        self.matched += matched
        unmatched = _unmatched(found, truth, TOLERANCE)
        ignored = [f for f in unmatched if any(abs(f - i) <= TOLERANCE for i in history.ignore)]
        self.reported += matched + len(unmatched) - len(ignored)
        self.false += len(unmatched) - len(ignored)

    @property
    def precision(self) -> float:
        return self.matched / self.reported if self.reported else float("nan")

    @property
    def recall(self) -> float:
        return self.matched / self.true if self.true else float("nan")

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else float("nan")

    def share(self, k: int) -> float:
        return self.within[k] / self.true if self.true else float("nan")


def _pairs(found: list[int], truth: list[int], tolerance: int) -> list[tuple[int, int]]:
    """One-to-one matches, closest first."""
    candidates = sorted((abs(f - t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth))
    used_f, used_t, pairs = set(), set(), []
    for distance, i, j in candidates:
        if distance <= tolerance and i not in used_f and j not in used_t:
            used_f.add(i)
            used_t.add(j)
            pairs.append((i, j))
    return pairs


def _matches(found: list[int], truth: list[int], tolerance: int) -> int:
    return len(_pairs(found, truth, tolerance))


def _unmatched(found: list[int], truth: list[int], tolerance: int) -> list[int]:
    used = {i for i, _ in _pairs(found, truth, tolerance)}
    return [f for i, f in enumerate(found) if i not in used]


def pct(value: float) -> str:
    return f"{100 * value:5.1f}%" if np.isfinite(value) else "    -"


def segmentation_rows(
    name: str, histories: list[History], found: list[list[int]], seconds: float, false_alarms: bool = True
) -> list[str]:
    rows = []
    cells = [(f"{s:.0%} steps", [i for i, h in enumerate(histories) if h.size == s]) for s in SIZES]
    cells.append(("no change", [i for i, h in enumerate(histories) if not h.changes]))
    total = Score()
    for cell, members in cells:
        if not members:
            continue
        score = Score()
        for i in members:
            score.add(histories[i], found[i])
            total.add(histories[i], found[i])
        fa = f"{1000 * score.false / score.builds:.2f}" if false_alarms else ""
        rows.append(
            f"| {name} | {cell} | {pct(score.share(1))} | {pct(score.share(5))} | {pct(score.share(10))} | "
            f"{pct(score.share(0))} | {pct(score.share(2))} | {fa} | | | |"
        )
    fa = 1000 * total.false / total.builds
    rows.append(
        f"| {name} | **all** | {pct(total.share(1))} | {pct(total.share(5))} | {pct(total.share(10))} | "
        f"{pct(total.share(0))} | {pct(total.share(2))} | {fa:.2f} | {total.precision:.3f} | {total.f1:.3f} | "
        f"{1000 * seconds:.1f} |"
    )
    return rows


def noise_rows(name: str, histories: list[History], found: list[list[int]]) -> list[str]:
    rows = []
    middle = sum(NOISE) / 2
    for low, high in ((NOISE[0], middle), (middle, NOISE[1])):
        band = f"{100 * low:.3g}-{100 * high:.3g}%"
        cells = []
        for size in SIZES:
            score = Score()
            for h, f in zip(histories, found, strict=True):
                if h.size == size and low <= h.noise < high:
                    score.add(h, f)
            cells.append(f"{pct(score.share(0))} / {pct(score.share(2))}")
        rows.append(f"| {name} | {band} | {cells[0]} | {cells[1]} |")
    return rows


def suite_rows(name: str, suite: list[History], found: list[list[int]], seconds: float) -> list[str]:
    level, every = Score(), Score()
    for history, points in zip(suite, found, strict=True):
        level.add(history, points)
        everything = History(history.name, history.values, sorted(set(history.changes + history.ignore)))
        every.add(everything, points)
    return [
        f"| {name} | {pct(level.share(1))} | {pct(level.share(5))} | {pct(level.share(10))} | "
        f"{level.precision:.3f} | {level.recall:.3f} | **{level.f1:.3f}** | {every.f1:.3f} | {1000 * seconds:.1f} |"
    ]


# ---------------------------------------------------------------- the gate after every build
def gate_fails(values: np.ndarray, points: list[int], direction: str) -> bool:
    changes = [ChangePoint(i, 0.0, 0.0, 0.0) for i in points]
    regression = latest_regression(values, changes, direction)
    return regression is not None and regression.change_pct >= MINOR


def perfsentinel_gate_points(values: np.ndarray) -> list[int]:
    """What the shipped gate acts on: the listed change points that hold at the gate's level."""
    listed = find_change_points(values)
    return [p.index for p in merge(values, [p.index for p in listed], GATE_ALPHA)]


def gate_tasks(histories: list[History]) -> list[tuple[int, int, str, np.ndarray]]:
    """(history, builds at the new level or 0 for a null run, direction, prefix)."""
    tasks = []
    for h_index, history in enumerate(histories):
        if history.changes:
            at = history.changes[0]
            tasks += [(h_index, k, history.worse_direction, history.values[: at + k]) for k in GATE_AFTER]
        else:
            tasks += [(h_index, 0, "both", history.values[:end]) for end in NULL_GATE_ENDS]
    return tasks


def gate_rows(name: str, histories: list[History], tasks: list, points: list[list[int]]) -> list[str]:
    fails = [gate_fails(prefix, p, direction) for (_, _, direction, prefix), p in zip(tasks, points, strict=True)]
    rows = []
    for size in SIZES:
        first: dict[int, int] = {}
        count = 0
        for (h_index, k, _, _), failed in zip(tasks, fails, strict=True):
            if histories[h_index].size != size:
                continue
            count += k == GATE_AFTER[0]
            if failed and k and (h_index not in first or k < first[h_index]):
                first[h_index] = k
        found = [sum(1 for k in first.values() if k <= limit) / count for limit in GATE_AFTER]
        rows.append(f"| {name} | worse {size:.0%} steps | " + " | ".join(pct(v) for v in found) + " | |")
    null = [failed for (_, k, _, _), failed in zip(tasks, fails, strict=True) if k == 0]
    rows.append(f"| {name} | no change | {' | '.join('' for _ in GATE_AFTER)} | "
                f"{1000 * sum(null) / len(null):.2f} ({sum(null)} of {len(null)}) |")  # fmt: skip
    return rows


# ---------------------------------------------------------------- main
def suite_histories(python: str, seeds: list[int]) -> list[History] | None:
    answer = run_worker(python, SUITE_WORKER, seeds)
    if answer is None:
        return None
    out = []
    for item in answer:  # type: ignore[union-attr]
        changes = sorted({i for i, kind in item["labels"] if kind in LEVEL_SHIFTS})
        ignore = sorted({i for i, kind in item["labels"] if kind not in LEVEL_SHIFTS})
        out.append(History(item["name"], np.array(item["values"], dtype=np.float64), changes, ignore))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=200, help="histories per cell (5%%, 10%%, no change)")
    parser.add_argument("--seeds-from", type=int, default=100_000, help="0: the tuning seeds")
    parser.add_argument("--suite-seeds", default="42,100,101,102,103", help="otava-test-data seeds (tuning: 1,2,3)")
    parser.add_argument("--otava-python", default="/tmp/otava-venv/bin/python")
    parser.add_argument("--no-gate", action="store_true", help="skip the gate-after-every-build table")
    args = parser.parse_args()
    python = args.otava_python if Path(args.otava_python).exists() else None
    if python is None:
        print(f"{args.otava_python} not found: Otava rows and the otava-test-data suite skipped", file=sys.stderr)
    started = time.perf_counter()
    histories = generated_set(args.seeds_from, args.series)
    series = [h.values for h in histories]
    methods: list[tuple[str, list[list[int]], float]] = [("perfsentinel", *timed(perfsentinel, series))]
    for label, magnitude in (("otava", 0.0), ("otava, min magnitude 5%", 0.05)):
        result = otava(python, series, magnitude) if python else None
        if result is not None:
            methods.append((label, *result))
    stepped = [h for h in histories if h.changes]
    oracle_found = [oracle(h.values) if h.changes else [] for h in histories]

    print(f"## Generated histories: {args.series} per cell, {BUILDS} builds, noise SD {NOISE[0]:.0%}-{NOISE[1]:.0%}, "
          f"seeds from {args.seeds_from}\n")  # fmt: skip
    print(
        "| method | cell | recall within 1 | within 5 | within 10 | exact build | within 2 | false alarms / 1,000 "
        "builds | precision | F1 | ms per history |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, found, seconds in methods:
        print("\n".join(segmentation_rows(name, histories, found, seconds)))
    oracle_rows = segmentation_rows(
        "oracle (one change known)", stepped, [oracle(h.values) for h in stepped], 0.0, False
    )
    print("\n".join(row for row in oracle_rows if "**all**" not in row))
    print("\nExact build / within 2 builds by noise SD:\n")
    print("| method | noise SD | 5% steps | 10% steps |\n|---|---|---|---|")
    for name, found, _ in methods:
        print("\n".join(noise_rows(name, histories, found)))
    print("\n".join(noise_rows("oracle (one change known)", histories, oracle_found)))

    suite = suite_histories(python, [int(s) for s in args.suite_seeds.split(",")]) if python else None
    if suite:
        print(f"\n## otava-test-data suite: {len(suite)} series (seeds {args.suite_seeds}), "
              f"{sum(len(h.changes) for h in suite)} level shifts\n")  # fmt: skip
        print(
            "| method | recall within 1 | within 5 | within 10 | precision | recall | F1 (level shifts) | "
            "F1 (all labels) | ms per series |\n|---|---|---|---|---|---|---|---|---|"
        )
        suite_series = [h.values for h in suite]
        print("\n".join(suite_rows("perfsentinel", suite, *timed(perfsentinel, suite_series))))
        for label, magnitude in (("otava", 0.0), ("otava, min magnitude 5%", 0.05)):
            result = otava(python, suite_series, magnitude)  # type: ignore[arg-type]
            if result is not None:
                print("\n".join(suite_rows(label, suite, *result)))

    if not args.no_gate:
        tasks = gate_tasks(histories)
        prefixes = [prefix for *_, prefix in tasks]
        print(f"\n## The gate after every build ({len(tasks)} gate runs): worse steps found within N builds at the "
              "new level (fail-on minor); false failures per 1,000 gate runs on unchanged histories\n")  # fmt: skip
        print("| method | histories | " + " | ".join(f"within {k}" for k in GATE_AFTER) + " | false failures |")
        print("|---|---|" + "---|" * (len(GATE_AFTER) + 1))
        points, _ = timed(perfsentinel_gate_points, prefixes)
        print("\n".join(gate_rows("perfsentinel", histories, tasks, points)))
        result = otava(python, prefixes, 0.0) if python else None
        if result is not None:
            print("\n".join(gate_rows("otava", histories, tasks, result[0])))
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
