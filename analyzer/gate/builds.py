"""``perfsentinel check --builds FILE``: gate a build on its benchmark history, no Prometheus needed.

The file is a CSV with a ``build`` column (build number, commit or version; the file's order is the build order),
an optional ``timestamp`` column (RFC 3339 or Unix seconds) and one numeric column per metric. Rows that repeat a
build id are several samples of that build; a build's level is their median (``--aggregate``).

Per metric, over the whole history (``analyzer.gate.changepoints``):

* every change point with ``p <= --change-alpha`` (0.005) is listed with its build, change % and p-value;
* the gate uses the change points that hold at ``GATE_ALPHA`` (0.002, under one false failure in a thousand gate
  runs at most) and asks what the latest build is part of: the latest level against the level before each of
  them, the worst (``changepoints.latest_regression``: steps in a row add up). That level is compared with the
  latest segment by the test of the other modes (Mann-Whitney with 5 or more builds on both sides, Student's t
  with fewer), Benjamini-Hochberg across the metrics; a worse change with ``q <= --alpha`` gets its tier from the
  change % and fails the build at or above ``--fail-on``.

The change build is the first build at the new level; the build before it is the last at the old one.
"""

from __future__ import annotations

import csv
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special

from analyzer.config import Config, TargetConfig
from analyzer.detection import stats
from analyzer.gate.changepoints import (
    DEFAULT_ALPHA,
    ChangePoint,
    find_change_points,
    latest_regression,
    merge,
    worse_sign,
)
from analyzer.gate.check import (
    FAIL,
    WARN,
    BudgetOutcome,
    CheckResult,
    PlotData,
    SeriesCheck,
    evaluate_budget,
    exit_code,
    settle_verdict,
    significantly_worse,
)
from analyzer.gate.recommendations import ACCEPT_BASELINE, ADJUST_BUDGET, INVESTIGATE, Event, Recommendation
from analyzer.gate.timewindows import parse_time

BUILD_COLUMN, TIME_COLUMN = "build", "timestamp"
GATE_ALPHA = 0.002  # change points the gate acts on; the history lists those at --change-alpha
MIN_BUILDS = 4  # builds with a value, per metric, before anything can be decided
AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "median": lambda v: float(np.median(v)),
    "mean": lambda v: float(np.mean(v)),
    "min": lambda v: float(np.min(v)),
}
MISSING = {"", "nan", "na", "null", "none", "-"}


class BuildsError(ValueError):
    """The builds file (or a flag about it) cannot be used; the message names the line and column."""

    def __init__(self, message: str, flag: str = "--builds") -> None:
        super().__init__(message)
        self.flag = flag


@dataclass(frozen=True)
class BuildHistory:
    path: str
    builds: tuple[str, ...]
    timestamps: tuple[float | None, ...]
    samples: dict[str, list[np.ndarray]]  # metric -> the finite samples of each build (possibly none)

    def since(self, build: str) -> BuildHistory:
        """The history from ``build`` on (the accepted level starts there)."""
        if build not in self.builds:
            raise BuildsError(f"build {build!r} is not in {self.path}", "--since")
        first = self.builds.index(build)
        return BuildHistory(
            self.path,
            self.builds[first:],
            self.timestamps[first:],
            {name: per_build[first:] for name, per_build in self.samples.items()},
        )


def read_builds(path: str | Path) -> BuildHistory:
    """Parse the CSV; BuildsError says what is wrong and where (nothing is skipped silently)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise BuildsError(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BuildsError(f"{path} is not a UTF-8 CSV file: {exc}") from None
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if not rows:
        raise BuildsError(f"{path} is empty: expected a header with a 'build' column and one column per metric")
    header = [cell.strip() for cell in rows[0]]
    lowered = [name.lower() for name in header]
    if BUILD_COLUMN not in lowered:
        raise BuildsError(f"{path}: the header has no 'build' column (found: {', '.join(header)})")
    duplicates = {name for name in header if header.count(name) > 1}
    if duplicates:
        raise BuildsError(f"{path}: column(s) {', '.join(sorted(duplicates))} appear more than once in the header")
    build_at = lowered.index(BUILD_COLUMN)
    time_at = lowered.index(TIME_COLUMN) if TIME_COLUMN in lowered else None
    metrics = [i for i in range(len(header)) if i not in (build_at, time_at)]
    if not metrics:
        raise BuildsError(f"{path}: no metric columns besides build and timestamp")
    if len(rows) < 2:
        raise BuildsError(f"{path} has a header and no builds")
    order: dict[str, int] = {}
    times: list[float | None] = []
    samples: dict[str, list[list[float]]] = {header[i]: [] for i in metrics}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise BuildsError(f"{path} line {line}: {len(row)} fields, the header has {len(header)}")
        build = row[build_at].strip()
        if not build:
            raise BuildsError(f"{path} line {line}: the build column is empty")
        if build not in order:
            order[build] = len(order)
            times.append(_timestamp(row[time_at], path, line) if time_at is not None else None)
            for values in samples.values():
                values.append([])
        position = order[build]
        for i in metrics:
            value = _number(row[i], path, line, header[i])
            if value is not None:
                samples[header[i]][position].append(value)
    arrays = {name: [np.array(v, dtype=np.float64) for v in per_build] for name, per_build in samples.items()}
    return BuildHistory(str(path), tuple(order), tuple(times), arrays)


def _number(text: str, path: str | Path, line: int, column: str) -> float | None:
    cell = text.strip()
    if cell.lower() in MISSING:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise BuildsError(f"{path} line {line}, column {column}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise BuildsError(f"{path} line {line}, column {column}: {cell!r} is not a finite number")
    return value


def _timestamp(text: str, path: str | Path, line: int) -> float | None:
    cell = text.strip()
    if not cell:
        return None
    try:
        return parse_time(cell, 0.0)
    except ValueError:
        raise BuildsError(f"{path} line {line}: timestamp {cell!r} is neither RFC 3339 nor Unix seconds") from None


# ---------------------------------------------------------------- options
@dataclass(frozen=True)
class BuildsOptions:
    path: str
    directions: tuple[tuple[str, str], ...] = ()  # (metric, direction) from --direction NAME=DIRECTION
    direction: str | None = None  # --direction DIRECTION: every metric without its own
    fail_on: str = "significant"
    undecided: str = "fail"
    alpha: float = 0.05  # false discovery rate across the metrics
    change_alpha: float = DEFAULT_ALPHA  # change points listed in the history
    test: str = stats.DEFAULT_TEST
    thresholds: stats.SeverityThresholds = stats.SeverityThresholds()
    confidence_level: float = 0.95
    min_builds: int = 1  # builds at the new level before the gate acts on it
    since: str | None = None
    aggregate: str = "median"
    metrics: tuple[str, ...] = ()  # --target: only these columns
    config_path: str | None = None
    mode: str = "builds"

    def direction_of(self, metric: str, target: TargetConfig | None) -> tuple[str, str]:
        """(direction, where it came from): --direction NAME=..., --direction ..., the config's target, both."""
        own = dict(self.directions)
        if metric in own:
            return own[metric], "--direction"
        if self.direction:
            return self.direction, "--direction"
        if target is not None:
            return target.direction, f"config target {target.name}"
        return "both", "default (any change is worse; give --direction)"


# ---------------------------------------------------------------- per metric
@dataclass(frozen=True)
class BuildChange:
    """One change point of a metric's history."""

    build: str
    previous_build: str
    timestamp: float | None
    change_pct: float  # worse-signed: positive means worse
    p_value: float
    direction: str  # worse | better
    before: float
    after: float

    def to_json(self) -> dict:
        from analyzer.gate.timewindows import rfc3339

        return {
            "build": self.build,
            "previous_build": self.previous_build,
            "timestamp": rfc3339(self.timestamp) if self.timestamp is not None else None,
            "change_pct": self.change_pct,
            "p_value": self.p_value,
            "direction": self.direction,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class MetricHistory:
    """One metric's levels per build (builds without a value left out)."""

    name: str
    builds: list[str]
    timestamps: list[float | None]
    levels: np.ndarray
    samples: list[np.ndarray]


def metric_history(history: BuildHistory, name: str, aggregate: str) -> MetricHistory:
    keep = [i for i, s in enumerate(history.samples[name]) if s.size]
    reduce = AGGREGATES[aggregate]
    return MetricHistory(
        name,
        [history.builds[i] for i in keep],
        [history.timestamps[i] for i in keep],
        np.array([reduce(history.samples[name][i]) for i in keep], dtype=np.float64),
        [history.samples[name][i] for i in keep],
    )


def described(metric: MetricHistory, points: list[ChangePoint], direction: str) -> list[BuildChange]:
    out = []
    for point in points:
        raw = point.after - point.before
        sign = worse_sign(direction, raw)
        change = sign * raw / abs(point.before) * 100.0 if point.before else math.nan
        out.append(
            BuildChange(
                metric.builds[point.index],
                metric.builds[point.index - 1],
                metric.timestamps[point.index],
                change,
                point.p_value,
                "worse" if change > 0 else "better",
                point.before,
                point.after,
            )
        )
    return out


def compare_levels(
    reference: np.ndarray, recent: np.ndarray, direction: str, test: str, confidence_level: float
) -> stats.Comparison:
    """The test of the other modes when both sides have ``stats.MIN_SAMPLES`` builds; below that Student's t with
    the pooled SD (one new build against the history: its prediction interval)."""
    level = float(np.median(reference))
    if reference.size >= stats.MIN_SAMPLES and recent.size >= stats.MIN_SAMPLES:
        return stats.compare_windows(reference, recent, level, direction, test, confidence_level=confidence_level)
    n1, n2 = reference.size, recent.size
    shift = float(recent.mean() - reference.mean())
    squares = float(((reference - reference.mean()) ** 2).sum() + ((recent - recent.mean()) ** 2).sum())
    dof = max(n1 + n2 - 2, 1)
    se = math.sqrt(squares / dof * (1.0 / n1 + 1.0 / n2)) if squares > 0 else 0.0
    sign = worse_sign(direction, shift)
    if se > 0:
        t = shift / se
        tail = float(special.stdtr(dof, -sign * t))  # toward worse; for both, sign * t = |t|
        p = 2.0 * tail if direction == "both" else tail
        half = float(special.stdtrit(dof, 0.5 + confidence_level / 2.0)) * se
    else:
        p, half = (0.0 if shift * sign > 0 else 1.0), 0.0
    scale = 100.0 / abs(level) if level else math.nan
    low, high = sorted((sign * (shift - half), sign * (shift + half)))
    pooled = math.sqrt(squares / dof) if squares > 0 else 0.0
    effect = sign * shift / pooled if pooled > 0 else (0.0 if shift == 0 else math.copysign(math.inf, sign * shift))
    return stats.Comparison(
        "student-t", min(p, 1.0), effect, sign * shift * scale, low * scale, high * scale, shift, n1, n2, n1, n2
    )


@dataclass
class MetricOutcome:
    """What the gate needs beyond SeriesCheck: where the latest level started and the metric's levels."""

    item: SeriesCheck
    metric: MetricHistory
    gate_p: float | None = None
    regression_start: int | None = None  # index into metric.builds
    latest_start: int = 0  # first build of the latest segment
    steps: list[BuildChange] = field(default_factory=list)  # the change points the regression is made of
    decided: bool = False  # enough builds to say something (pass when nothing got worse)


class BuildsChecker:
    def __init__(self, history: BuildHistory, options: BuildsOptions, config: Config | None = None, clock=time.time):
        self.history = history
        self.options = options
        self.config = config
        self.clock = clock

    def metrics(self) -> list[str]:
        names = list(self.history.samples)
        unknown = [m for m in self.options.metrics if m not in names]
        if unknown:
            raise BuildsError(
                f"no column {', '.join(unknown)} in {self.history.path} (metrics: {', '.join(names)})", "--target"
            )
        return [m for m in names if not self.options.metrics or m in self.options.metrics]

    def _target(self, metric: str) -> TargetConfig | None:
        if self.config is None:
            return None
        return next((t for t in self.config.targets if t.name == metric), None)

    def run(self) -> CheckResult:
        result = CheckResult(self.options, self.clock())  # type: ignore[arg-type]
        history = self.history.since(self.options.since) if self.options.since else self.history
        outcomes = [self._metric(history, name) for name in self.metrics()]
        gated = [o for o in outcomes if o.gate_p is not None]
        for outcome, q in zip(gated, stats.benjamini_hochberg([o.gate_p for o in gated]), strict=True):
            outcome.item.q_value = float(q)
        for outcome in outcomes:
            self._decide(outcome)
        result.series = [o.item for o in outcomes]
        result.finished_at = self.clock()
        result.exit_code = exit_code(result)
        return result

    def _metric(self, history: BuildHistory, name: str) -> MetricOutcome:
        options, target = self.options, self._target(name)
        direction, source = options.direction_of(name, target)
        fail_on = (target.check.fail_on if target is not None else None) or options.fail_on
        item = SeriesCheck(
            name, {}, fail_on=fail_on, baseline_source=f"build history (direction {direction}: {source})"
        )
        metric = metric_history(history, name, options.aggregate)
        outcome = MetricOutcome(item, metric)
        item.direction = direction
        if metric.levels.size and target is not None and target.check.budget is not None:
            item.budget = evaluate_budget(target.check.budget, metric.samples[-1])
        if metric.levels.size:
            item.candidate_mean = float(metric.levels[-1])
        if metric.levels.size < MIN_BUILDS:
            item.reason = f"insufficient data: {metric.levels.size} build(s) with a value, need {MIN_BUILDS}"
            return outcome
        outcome.decided = True
        listed = find_change_points(metric.levels, alpha=options.change_alpha, min_last=options.min_builds)
        item.change_points = described(metric, listed, direction)
        strict = merge(metric.levels, [p.index for p in listed], GATE_ALPHA, min_last=options.min_builds)
        outcome.latest_start = strict[-1].index if strict else 0
        item.plot = _plot(metric, listed, strict)
        regression = latest_regression(metric.levels, strict, direction)
        if regression is not None:
            reference, recent = regression.reference, regression.recent
            outcome.regression_start = regression.start
            outcome.steps = described(metric, strict[regression.point :], direction)
            scan_p = max(p.p_value for p in strict[regression.point :])
        elif strict:
            reference, recent = (
                (strict[-2].index if len(strict) > 1 else 0, strict[-1].index),
                (strict[-1].index, metric.levels.size),
            )
            scan_p = strict[-1].p_value
        else:
            item.reason = f"no change of the level in {metric.levels.size} builds"
            return outcome
        item.comparison = compare_levels(
            metric.levels[reference[0] : reference[1]],
            metric.levels[recent[0] : recent[1]],
            direction,
            options.test,
            options.confidence_level,
        )
        item.baseline_mean = float(metric.levels[reference[0] : reference[1]].mean())
        item.candidate_mean = float(metric.levels[recent[0] : recent[1]].mean())
        outcome.gate_p = max(item.comparison.p_value, scan_p)
        return outcome

    def _decide(self, outcome: MetricOutcome) -> None:
        item, options = outcome.item, self.options
        regressed = outcome.regression_start is not None and significantly_worse(item, options.alpha)
        if settle_verdict(item, regressed, outcome.decided, options.thresholds):
            item.reason = "budget breached" + (f"; {item.reason}" if item.reason else "")
        if item.verdict in (FAIL, WARN):
            self._explain(outcome)

    def _explain(self, outcome: MetricOutcome) -> None:
        item, metric = outcome.item, outcome.metric
        start = outcome.regression_start if item.severity != "none" else None
        recommendations = []
        if start is not None:
            item.change_build = metric.builds[start]
            item.change_start = metric.timestamps[start]
            previous = metric.builds[start - 1]
            item.cause = Event(
                metric.timestamps[start],  # type: ignore[arg-type]
                f"build {metric.builds[start]} (the first build at the new level; build {previous} was the last "
                "at the old one)",
                "builds",
            )
            recommendations.append(Recommendation(INVESTIGATE, _investigate_text(item.change_build, previous, outcome)))
        if start is not None:  # a regression to accept (a budget alone is adjusted, not accepted)
            accept_from = metric.builds[outcome.latest_start]
            command = accept_command(self.options, accept_from)
            recommendations.append(
                Recommendation(
                    ACCEPT_BASELINE,
                    f"If the new level of {item.target} is intended, accept it as the baseline: check the history "
                    f"from build {accept_from} on (the first build at the latest level): {command}",
                    command,
                )
            )
        if item.budget is not None and not item.budget.passed:
            recommendations.append(_budget_advice(item.target, item.budget))
        item.recommendations = recommendations


def _investigate_text(build: str, previous: str, outcome: MetricOutcome) -> str:
    text = (
        f"The level changed at build {build}: investigate the changes between build {previous} and build {build} first."
    )
    if len(outcome.steps) > 1:
        steps = ", ".join(f"{s.build} ({s.change_pct:+.1f}%)" for s in outcome.steps)
        text += f" It built up in {len(outcome.steps)} steps: {steps} (positive = worse)."
    return text


def _budget_advice(metric: str, budget: BudgetOutcome) -> Recommendation:
    suggestion = budget.suggestion()
    text = f"Budget breached ({budget.describe()}). If this cost is accepted, set targets[{metric}].check.budget"
    text += f".{suggestion}" if suggestion else ""
    return Recommendation(ADJUST_BUDGET, text + "; otherwise fix the regression before merging.")


def accept_command(options: BuildsOptions, since: str) -> str:
    """The same check from ``since`` on, with every flag that shaped this one."""
    args = ["perfsentinel", "check", "--builds", options.path, "--since", since]
    if options.config_path:
        args += ["--config", options.config_path]
    if options.direction:
        args += ["--direction", options.direction]
    for metric, direction in options.directions:
        args += ["--direction", f"{metric}={direction}"]
    for metric in options.metrics:
        args += ["--target", metric]
    defaults = BuildsOptions(options.path)
    pairs = [
        ("--fail-on", options.fail_on, defaults.fail_on),
        ("--undecided", options.undecided, defaults.undecided),
        ("--alpha", options.alpha, defaults.alpha),
        ("--change-alpha", options.change_alpha, defaults.change_alpha),
        ("--test", options.test, defaults.test),
        ("--min-builds", options.min_builds, defaults.min_builds),
        ("--aggregate", options.aggregate, defaults.aggregate),
    ]
    args += [
        part
        for flag, value, default in pairs
        if value != default
        for part in (flag, f"{value:g}" if isinstance(value, float) else str(value))
    ]
    if options.thresholds != defaults.thresholds:
        t = options.thresholds
        args += ["--severity-thresholds", f"{t.minor:g},{t.significant:g},{t.critical:g}"]
    return shlex.join(args)


def _plot(metric: MetricHistory, listed: list[ChangePoint], strict: list[ChangePoint]) -> PlotData:
    """Levels per build and the mean between change points: what the gate compared."""
    bounds = [0, *(p.index for p in listed), metric.levels.size]
    means = np.empty_like(metric.levels)
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        means[start:end] = metric.levels[start:end].mean()
    nothing = np.full(metric.levels.size, np.nan)
    positions = np.arange(metric.levels.size, dtype=np.float64)
    plot = PlotData(positions, metric.levels, means, nothing, nothing, float(strict[-1].index if strict else 0))
    plot.kind = "builds"
    plot.builds = tuple(metric.builds)
    plot.marks = tuple(float(p.index) for p in listed)
    return plot
