"""The ``perfsentinel`` command: run, once, check, backtest, baseline, validate-config, demo.

Exit codes: 0 success, 1 the command ran and failed, 2 usage or configuration error (``check``: 1 a regression,
3 undecided).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from analyzer.commands import logs
from analyzer.config import (
    MODELS,
    Config,
    ConfigError,
    TargetConfig,
    build_target,
    each_error,
    load_config,
    with_prometheus_url,
)
from analyzer.gate.checkcmd import add_check_arguments, add_report_arguments
from analyzer.service.sharding import Shard, resolve_shard

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="perfsentinel",
        description="Seasonal baselines, anomaly scores and regression verdicts for Prometheus metrics.",
        epilog="Exit codes: 0 success, 1 the command ran and failed, 2 usage or configuration error (check: 1 a "
        "regression, 3 undecided). 'perfsentinel COMMAND --help' shows a command's options.",
    )
    top.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    top.add_argument(
        "--log-format",
        default="text",
        choices=logs.FORMATS,
        help="text lines, or one JSON object per line with the run figures as fields (default text)",
    )
    commands = top.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the service: scheduled refits and scores, /metrics")
    _common(run)
    run.add_argument("--listen", help="HOST:PORT for /metrics, /healthz, /readyz (default from config: 127.0.0.1:9977)")
    run.add_argument("--web.config.file", dest="web_config_file", metavar="FILE",
                     help="TLS and basic auth for the endpoints, exporter-toolkit format (docs/deploy.md)")  # fmt: skip
    run.add_argument("--shard-index", type=int, help="this replica's shard (env PERFSENTINEL_SHARD_INDEX; 0)")
    run.add_argument("--shard-count", type=int, help="number of replicas (env PERFSENTINEL_SHARD_COUNT; 1)")
    run.add_argument("--shard-index-from-hostname", action="store_true",
                     help="shard index = the hostname's -<ordinal> suffix (StatefulSet pods)")  # fmt: skip

    once = commands.add_parser("once", help="refit and score once, print, exit")
    _common(once)
    once.add_argument("--output", choices=["json", "table"], default="table")
    add_report_arguments(once)

    back = commands.add_parser("backtest", help="replay timestamp,value CSV files causally")
    back.add_argument("--input", required=True, type=Path, help="a CSV file or a folder of them (recursive)")
    back.add_argument("--output", required=True, type=Path, help="a CSV file, or a folder for a folder input")
    back.add_argument("--model", choices=MODELS, help="baseline model (overrides the config)")
    back.add_argument("--config", help="take the first target's settings and the schedule from this config")
    back.add_argument("--target", help="with --config: the target whose settings to use")
    back.add_argument("--direction", choices=["lower_is_better", "higher_is_better", "both"])
    back.add_argument("--refit-every", help="refit cadence, e.g. 1h (default: the config's schedule.refit_every)")
    back.add_argument("--workers", type=int, default=0, help="fit processes (default: one per core)")
    add_report_arguments(back)

    check = commands.add_parser("check", help="CI gate: compare a candidate with a baseline; exit 0/1/2/3")
    check.add_argument("--config", help="YAML config file (optional with --builds)")
    check.add_argument("--prometheus-url", help="override prometheus.url from the config")
    add_check_arguments(check)

    validate = commands.add_parser("validate-config", help="check a config file (every problem at once); exit 0 "
                                   "or 2")  # fmt: skip
    validate.add_argument("config")
    validate.add_argument(
        "--check-queries",
        action="store_true",
        help="also evaluate each target's query once on Prometheus (instant query) and print how "
        "many series it returns; exit 2 if one is rejected, 1 if Prometheus cannot be asked",
    )
    validate.add_argument("--prometheus-url", help="with --check-queries: override prometheus.url from the config")

    demo = commands.add_parser("demo", help="generate demo metrics, backfill a local Prometheus, analyze once")
    demo.add_argument("--workdir", type=Path, default=Path(".work/demo"))
    demo.add_argument("--keep-running", action="store_true", help="keep Prometheus and the exporter running")

    from analyzer.commands.baseline_cli import add_parser as add_baseline_parser

    add_baseline_parser(commands)
    return top


def _common(command: argparse.ArgumentParser) -> None:
    command.add_argument("--config", required=True, help="YAML config file")
    command.add_argument("--prometheus-url", help="override prometheus.url from the config")


def load(args: argparse.Namespace) -> Config:
    from analyzer.prometheus.credentials import redact_logs

    config = load_config(args.config)
    config = with_prometheus_url(config, args.prometheus_url) if args.prometheus_url else config
    redact_logs(config.prometheus)  # no log line, traceback included, shows a password or token
    return config


# ---------------------------------------------------------------- commands
def cmd_validate(args: argparse.Namespace) -> int:
    """Every problem of the file at once (ConfigErrors); with --check-queries each query evaluated once."""
    config = load(args) if args.check_queries else load_config(args.config)
    print(f"{args.config}: ok ({len(config.targets)} target(s))")
    if not args.check_queries:
        return EXIT_OK
    from analyzer.commands.querycheck import check_queries, report

    return report(check_queries(config), sys.stdout)


def cmd_once(args: argparse.Namespace) -> int:
    from analyzer.commands.output import print_results
    from analyzer.models.fitting import FitPool
    from analyzer.prometheus.reader import PrometheusReader
    from analyzer.service.pipeline import Analyzer

    config = load(args)
    started = time.time()
    pool = FitPool(config.schedule.fit_workers)
    analyzer = Analyzer(config, PrometheusReader(config.prometheus), pool=pool)
    try:
        analyzer.refit()
        snapshot = analyzer.score()
    finally:
        pool.close()
        analyzer.close()
    problems = target_problems(snapshot)
    code = EXIT_FAILED if problems else EXIT_OK
    if not (args.format and not args.report):  # --format alone prints that format instead of the table
        print_results(snapshot, args.output, sys.stdout)
    for problem in problems:
        print(f"perfsentinel: {problem}", file=sys.stderr)
    if args.report or args.format:
        from analyzer.gate.checkcmd import write_requested
        from analyzer.gate.reports.build import from_snapshot

        write_requested(args, from_snapshot(snapshot, code, started))
    return code


def target_problems(snapshot) -> list[str]:
    """One line per target that was not analysed: its query failed, or it returned no series."""
    problems = []
    for outcome in snapshot.targets:
        if not outcome.success:
            problems.append(f"target {outcome.target}: query failed: {outcome.error}")
        elif outcome.returned == 0:
            problems.append(f"target {outcome.target}: query returned no series: nothing analysed")
    return problems


def cmd_run(args: argparse.Namespace) -> int:
    from analyzer.commands.run import serve

    config = load(args)
    return serve(config, args.listen or config.listen, shard_from_args(args), args.web_config_file)


def shard_from_args(args: argparse.Namespace) -> Shard:
    """The shard from the flags, the PERFSENTINEL_SHARD_* environment or the pod's hostname."""
    try:
        return resolve_shard(args.shard_index, args.shard_count, args.shard_index_from_hostname, os.environ,
                             socket.gethostname())  # fmt: skip
    except ValueError as exc:
        raise ConfigError("--shard-index", str(exc)) from None


def backtest_target(args: argparse.Namespace) -> tuple[TargetConfig, str, float]:
    """The target settings, timezone and refit cadence a backtest uses."""
    from analyzer.durations import parse_duration

    if args.config:
        config = load_config(args.config)
        target = config.target(args.target) if args.target else config.targets[0]
        timezone, every = config.timezone, config.schedule.refit_every
    else:
        target = build_target({"name": "backtest", "query": "backtest"}, {}, "backtest")
        timezone, every = "UTC", 3600.0
    overrides = {"model": args.model, "direction": args.direction}
    target = replace(target, **{k: v for k, v in overrides.items() if v})
    if args.refit_every:
        every = parse_duration(args.refit_every)
    return target, timezone, every


def cmd_backtest(args: argparse.Namespace) -> int:
    from analyzer.commands.backtest import run_backtest
    from analyzer.models.fitting import FitPool

    if not args.input.exists():
        raise ConfigError("--input", f"{args.input} does not exist")
    target, timezone, every = backtest_target(args)
    started = time.time()
    pool = FitPool(args.workers)
    try:
        count = run_backtest(args.input, args.output, target, timezone, every, pool)
    finally:
        pool.close()
    print(f"backtest: {count} file(s) written to {args.output}", file=sys.stderr if args.format else sys.stdout)
    if args.report or args.format:
        from analyzer.gate.checkcmd import write_requested
        from analyzer.gate.reports.build import from_backtest

        write_requested(args, from_backtest(args.output, started))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from analyzer.commands.demo import run_demo

    return run_demo(args.workdir, keep_running=args.keep_running)


def cmd_baseline(args: argparse.Namespace) -> int:
    from analyzer.commands.baseline_cli import cmd_baseline as run_baseline_command

    return run_baseline_command(args)


COMMANDS = {"run": cmd_run, "once": cmd_once, "backtest": cmd_backtest, "validate-config": cmd_validate,
            "demo": cmd_demo, "baseline": cmd_baseline}  # fmt: skip


def cmd_check(args: argparse.Namespace) -> int:
    from analyzer.gate.checkcmd import run_check

    return run_check(args, load(args) if args.config else None)


COMMANDS["check"] = cmd_check


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logs.configure(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for error in each_error(exc):
            print(f"perfsentinel: config error: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
