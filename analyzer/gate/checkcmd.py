"""Command-line glue for ``perfsentinel check`` and the ``--report``/``--format`` options of ``check``,
``once`` and ``backtest``: arguments in, CheckOptions and report files out. The logic lives in
``analyzer.gate.check`` and ``analyzer.gate.reports``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from analyzer.config import GATE_TIERS, Config, ConfigError
from analyzer.durations import parse_duration
from analyzer.gate.recommendations import parse_event
from analyzer.gate.timewindows import parse_baseline_windows, parse_time, parse_window, span
from analyzer.prometheus.selectors import parse_matchers

if TYPE_CHECKING:  # the statistics stack loads only when check runs, not for every perfsentinel command
    from analyzer.gate.builds import BuildsOptions
    from analyzer.gate.check import CheckOptions
    from analyzer.gate.reports.model import Report

STORED = "stored"
DEFAULT_CANDIDATE = "now-1h:now"
DIRECTIONS = ("lower_is_better", "higher_is_better", "both")  # analyzer.config.DIRECTIONS
PROMETHEUS_ONLY = ("candidate", "baseline", "baseline_selector", "candidate_selector", "history", "events_query",
                   "prometheus_url", "now")  # fmt: skip
BUILDS_ONLY = ("since",)
TESTS = ("mannwhitney", "welch", "ks")  # analyzer.detection.stats.TESTS, repeated so --help stays light


def add_report_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--report", type=Path, metavar="DIR", help="write report.json, junit.xml, summary.md and report.html into DIR"
    )
    command.add_argument(
        "--format",
        action="append",
        choices=["json", "junit", "markdown", "html"],
        help="only these report formats (repeatable); without --report, print it to stdout",
    )


def add_check_arguments(check: argparse.ArgumentParser) -> None:
    check.description = (
        "Compare a candidate with a baseline per target and series (Prometheus), or gate the latest build on a "
        "benchmark history (--builds); exit 0/1/2/3."
    )
    check.epilog = (
        "exit codes: 0 no regression at or above the gate, 1 gated regression or breached budget, 2 usage or "
        "configuration error, 3 could not decide (Prometheus unreachable, insufficient data; --undecided pass: 0)"
    )
    check.add_argument("--candidate", help="candidate window START:END (default now-1h:now)")
    check.add_argument(
        "--baseline",
        help="baseline window START:END (now-7d:now-1h, RFC 3339, Unix seconds), several joined by commas, "
        "'shift:1d,7d' (the candidate window that much earlier: the same time of day or week), or 'stored' (the "
        "seasonal baseline fitted on the history before the candidate, or the service's stored one)",
    )
    check.add_argument("--baseline-selector", help='label matchers for the baseline, e.g. version="1.4.2"')
    check.add_argument("--candidate-selector", help='label matchers for the candidate, e.g. version="1.5.0"')
    check.add_argument("--history", help="stored mode: history to fit on (default: each target's history)")
    check.add_argument(
        "--fail-on",
        choices=GATE_TIERS,
        default="significant",
        help="lowest tier that fails the build (default significant)",
    )
    check.add_argument(
        "--undecided",
        choices=["fail", "pass"],
        default="fail",
        help="exit 3 (fail) or 0 (pass) when a series cannot be decided (default fail)",
    )
    check.add_argument("--alpha", type=float, default=0.05, help="false discovery rate across all series")
    check.add_argument("--test", choices=TESTS, default=TESTS[0])
    check.add_argument(
        "--severity-thresholds",
        default="5,15,30",
        metavar="MINOR,SIGNIFICANT,CRITICAL",
        help="change in %% at which each tier starts (default 5,15,30)",
    )
    check.add_argument("--target", action="append", default=[], help="check only this target (repeatable)")
    check.add_argument(
        "--event",
        action="append",
        default=[],
        metavar="TIME=TEXT",
        help="a deployment or change, e.g. now-20m='deploy 1.5.0' (repeatable)",
    )
    check.add_argument("--events-query", help="PromQL whose value changes mark deployments, e.g. app_build_info")
    check.add_argument("--max-points", type=int, default=500, help="samples per series and window (default 500)")
    check.add_argument("--min-step", default="15s", help="finest query step (default 15s)")
    check.add_argument("--now", help="evaluate relative times against this instant instead of the clock")
    builds = check.add_argument_group("benchmark history (--builds; no Prometheus, --config optional)")
    builds.add_argument(
        "--builds",
        metavar="FILE",
        help="CSV with a build column, an optional timestamp column and one numeric column per metric (the file's "
        "order is the build order; repeated build ids are several samples); gates the latest build",
    )
    builds.add_argument(
        "--direction",
        action="append",
        default=[],
        metavar="[METRIC=]DIRECTION",
        help="lower_is_better, higher_is_better or both, for every metric or one (repeatable; default: the config "
        "target of that name, else both)",
    )
    builds.add_argument("--since", metavar="BUILD", help="only the history from this build on (accept a level)")
    builds.add_argument(
        "--min-builds", type=int, default=1, help="builds at a new level before the gate acts on it (default 1)"
    )
    builds.add_argument(
        "--aggregate",
        choices=["median", "mean", "min"],
        default="median",
        help="one level per build from its samples (default median)",
    )
    builds.add_argument(
        "--change-alpha",
        type=float,
        default=0.005,
        help="significance of the change points listed in the history (default 0.005; the gate uses 0.002)",
    )
    add_report_arguments(check)


def _usage(flag: str, exc: Exception) -> ConfigError:
    return ConfigError(flag, str(exc))


def check_options(args: argparse.Namespace, now: float) -> CheckOptions:
    """Validate the arguments; every problem is a ConfigError naming the flag (exit code 2)."""
    from analyzer.detection import stats
    from analyzer.gate.check import MODES, CheckOptions

    try:
        candidate = parse_window(args.candidate or DEFAULT_CANDIDATE, now)
    except ValueError as exc:
        raise _usage("--candidate", exc) from None
    baseline_matchers = _matchers("--baseline-selector", args.baseline_selector)
    candidate_matchers = _matchers("--candidate-selector", args.candidate_selector)
    parts: tuple = ()
    if args.baseline == STORED:  # the default, named
        mode = MODES[2]
    elif baseline_matchers or candidate_matchers:
        mode = MODES[1]
        parts = _windows(args.baseline, now, candidate) if args.baseline else ()
    elif args.baseline:
        mode, parts = MODES[0], _windows(args.baseline, now, candidate)
        if any(p.end > candidate.start and p.start < candidate.end for p in parts):
            raise ConfigError("--baseline", "the baseline window overlaps the candidate window")
    else:  # the default: the seasonal baseline (the service's store, or fitted on the history before the candidate)
        mode = MODES[2]
    baseline = span(parts, args.baseline) if parts else None
    if not 0 < args.alpha < 1:
        raise ConfigError("--alpha", f"must be between 0 and 1, got {args.alpha}")
    if args.max_points < 10:
        raise ConfigError("--max-points", "must be at least 10")
    try:
        thresholds = stats.SeverityThresholds(*(float(v) for v in args.severity_thresholds.split(",")))
        history = parse_duration(args.history) if args.history else None
        min_step = parse_duration(args.min_step)
        events = tuple(parse_event(text, now) for text in args.event)
    except (TypeError, ValueError) as exc:
        raise ConfigError("check", str(exc)) from None
    return CheckOptions(
        mode,
        candidate,
        baseline,
        parts,
        baseline_matchers,
        candidate_matchers,
        history,
        args.fail_on,
        args.undecided,
        args.alpha,
        args.test,
        thresholds,
        max_points=args.max_points,
        min_step=min_step,
        targets=tuple(args.target),
        events=events,
        events_query=args.events_query,
        config_path=args.config,
    )


def _windows(text: str, now: float, candidate):
    try:
        return parse_baseline_windows(text, now, candidate)
    except ValueError as exc:
        raise _usage("--baseline", exc) from None


def _matchers(flag: str, text: str | None):
    if not text:
        return ()
    try:
        return parse_matchers(text)
    except ValueError as exc:
        raise _usage(flag, exc) from None


def builds_options(args: argparse.Namespace) -> BuildsOptions:
    """Validate the arguments of a --builds check; every problem is a ConfigError naming the flag (exit code 2)."""
    from analyzer.detection import stats
    from analyzer.gate.builds import BuildsOptions

    for name in PROMETHEUS_ONLY:
        if getattr(args, name, None):
            raise ConfigError("--" + name.replace("_", "-"), "is for Prometheus checks, not with --builds")
    if args.event:
        raise ConfigError("--event", "is for Prometheus checks, not with --builds")
    direction, per_metric = None, []
    for text in args.direction:
        metric, sep, value = text.rpartition("=")
        if value not in DIRECTIONS or (sep and not metric):
            raise ConfigError("--direction", f"expected [METRIC=]{'|'.join(DIRECTIONS)}, got {text!r}")
        if sep:
            per_metric.append((metric, value))
        elif direction not in (None, value):
            raise ConfigError("--direction", "give one direction for every metric, or METRIC=DIRECTION")
        else:
            direction = value
    if not 0 < args.alpha < 1:
        raise ConfigError("--alpha", f"must be between 0 and 1, got {args.alpha}")
    if not 0 < args.change_alpha < 1:
        raise ConfigError("--change-alpha", f"must be between 0 and 1, got {args.change_alpha}")
    if args.min_builds < 1:
        raise ConfigError("--min-builds", "must be at least 1")
    try:
        thresholds = stats.SeverityThresholds(*(float(v) for v in args.severity_thresholds.split(",")))
    except (TypeError, ValueError) as exc:
        raise ConfigError("--severity-thresholds", str(exc)) from None
    return BuildsOptions(
        args.builds,
        tuple(per_metric),
        direction,
        args.fail_on,
        args.undecided,
        args.alpha,
        args.change_alpha,
        args.test,
        thresholds,
        min_builds=args.min_builds,
        since=args.since,
        aggregate=args.aggregate,
        metrics=tuple(args.target),
        config_path=args.config,
    )


def run_builds_check(args: argparse.Namespace, config: Config | None) -> int:
    from analyzer.gate.builds import BuildsChecker, BuildsError, read_builds
    from analyzer.gate.reports.build import from_builds

    options = builds_options(args)
    try:
        checker = BuildsChecker(read_builds(options.path), options, config)
        checker.metrics()
        result = checker.run()
    except BuildsError as exc:
        raise ConfigError(exc.flag, str(exc)) from None
    report = from_builds(result)
    print_summary(report, sys.stderr if args.format and not args.report else sys.stdout)
    write_requested(args, report)
    return result.exit_code


def run_check(args: argparse.Namespace, config: Config | None) -> int:
    if args.builds:
        return run_builds_check(args, config)
    for name in BUILDS_ONLY:
        if getattr(args, name, None):
            raise ConfigError("--" + name.replace("_", "-"), "is for --builds checks")
    if args.direction:
        raise ConfigError("--direction", "is for --builds checks; a Prometheus target's direction is in the config")
    if config is None:
        raise ConfigError("--config", "required for a Prometheus check (only --builds works without one)")
    from analyzer.gate.check import Checker
    from analyzer.gate.reports.build import from_check
    from analyzer.models.fitting import FitPool
    from analyzer.prometheus.reader import PrometheusReader

    try:
        now = parse_time(args.now, time.time()) if args.now else time.time()
    except ValueError as exc:
        raise _usage("--now", exc) from None
    options = check_options(args, now)
    pool = FitPool(config.schedule.fit_workers) if options.mode == STORED else None
    try:
        checker = Checker(config, PrometheusReader(config.prometheus), options, pool)
        try:
            checker.targets()
        except ValueError as exc:  # unknown --target
            raise ConfigError("--target", str(exc)) from None
        result = checker.run()
    finally:
        if pool is not None:
            pool.close()
    report = from_check(result)
    print_summary(report, sys.stderr if args.format and not args.report else sys.stdout)
    write_requested(args, report)
    return result.exit_code


def write_requested(args: argparse.Namespace, report: Report) -> None:
    from analyzer.gate.reports import write_reports

    if args.report or args.format:
        for path in write_reports(report, args.report, args.format):
            print(f"report: {path}", file=sys.stderr)


def print_summary(report: Report, out: TextIO) -> None:
    """One line per series that did not pass, the target errors, and the verdict."""
    from analyzer.gate.check import PASS
    from analyzer.gate.reports.text import item_headline

    for item in report.worst_first():
        if item.verdict != PASS:
            out.write(item_headline(item) + "\n")
    for error in report.errors:
        out.write(f"{error['target']}: {error['kind']}: {error['message']}\n")
    for warning in report.warnings:
        out.write(f"warning: {warning}\n")
    counts = ", ".join(f"{n} {v}" for v, n in report.counts().items() if n) or "no series"
    out.write(
        f"perfsentinel check: {report.verdict.upper()} (exit {report.exit_code}): {counts} in {report.duration:.1f} s\n"
    )
