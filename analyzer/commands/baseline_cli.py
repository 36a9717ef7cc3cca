"""``perfsentinel baseline list|show|accept|pin|reset``: inspect and steer stored baselines.

The commands work on the store file (``<state_dir>/baselines.sqlite`` from ``--config``, or ``--store``); the
running service applies ``accept`` and ``reset`` at its next refit pass of the series (at most
refit_every / 4 later) and picks up ``pin`` then too. Series are chosen by target and, optionally, label
matchers (``service=checkout,region=eu``) or the exact series key as printed by ``list``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store imports the models (pandas, statsmodels): loaded when a baseline command runs
    from analyzer.state.store import BaselineStore, SeriesRecord

EXIT_OK, EXIT_FAILED = 0, 1


HELP = {
    "list": "one line per series: active version, model, age, flags, last decision",
    "show": "every stored version and flagged period of the matching series",
    "accept": "take the current level as the new normal (unmasks flagged periods)",
    "pin": "freeze a series on a stored version (or --release the pin)",
    "reset": "forget stored versions and flags; the series is refitted from scratch",
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    base = commands.add_parser("baseline", help="list, show, accept, pin or reset stored baselines")
    actions = base.add_subparsers(dest="baseline_command", required=True)
    for name, helptext in HELP.items():
        command = actions.add_parser(name, help=helptext)
        source = command.add_mutually_exclusive_group(required=True)
        source.add_argument("--config", help="YAML config; the store is <state_dir>/baselines.sqlite")
        source.add_argument("--store", type=Path, help="the store file itself")
        command.add_argument("target", nargs="?" if name in ("list", "show") else None, help="target name")
        command.add_argument("series", nargs="?", help="label matchers k=v,k2=v2 or the series key; default: all")
        if name in ("list", "show"):
            command.add_argument("--json", action="store_true", help="print JSON")
        if name == "accept":
            command.add_argument("--note", default="", help="why (kept with the accepted periods)")
        if name == "pin":
            which = command.add_mutually_exclusive_group(required=True)
            which.add_argument("--version", type=int, help="the version to freeze on")
            which.add_argument("--release", action="store_true", help="remove the pin")


def open_store(args: argparse.Namespace) -> BaselineStore:
    from analyzer.state.store import BaselineStore

    if args.store:
        return BaselineStore(args.store, create=False)
    from analyzer.config import ConfigError, load_config

    config = load_config(args.config)
    if not config.state_dir:
        raise ConfigError("state_dir", "not set: there is no baseline store (baselines live in memory only)")
    return BaselineStore.in_dir(config.state_dir, create=False)


def matches(record: SeriesRecord, selector: str | None) -> bool:
    if not selector:
        return True
    if selector.startswith("{"):
        return record.key == selector
    wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
    return all(record.labels.get(k) == v.strip('"') for k, v in wanted.items())


def selected(store: BaselineStore, args: argparse.Namespace) -> list[SeriesRecord]:
    from analyzer.state.store import StoreError

    found = [s for s in store.series(args.target) if matches(s, args.series)]
    if not found and args.baseline_command not in ("list", "show"):
        raise StoreError(f"no stored series of target {args.target!r} match {args.series or 'anything'}")
    return found


def iso(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(seconds: float) -> str:
    elapsed = max(0.0, time.time() - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if elapsed >= size:
            return f"{elapsed / size:.1f}{unit}"
    return f"{elapsed:.0f}s"


def summary(store: BaselineStore, record: SeriesRecord) -> dict:
    versions = store.versions(record.target, record.key)
    active = next((v for v in versions if v.active), None)
    flags = store.flags(record.target, record.key)
    return {
        "target": record.target, "series": record.key, "version": active.version if active else None,
        "model": active.model if active else None, "created_at": iso(active.created_at) if active else None,
        "age": age(active.created_at) if active else None, "reason": active.reason if active else None,
        "trained_from": iso(active.trained_from) if active else None,
        "trained_to": iso(active.trained_to) if active else None,
        "pinned": record.pinned_version, "pending": record.pending_action,
        "flags_open": sum(f.accepted_at is None for f in flags), "flags_accepted": sum(f.accepted_at is not None
                                                                                     for f in flags),
        "last_seen": iso(record.last_seen), "decision": record.decision,
    }  # fmt: skip


def cmd_list(store: BaselineStore, args: argparse.Namespace) -> int:
    rows = [summary(store, record) for record in selected(store, args)]
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return EXIT_OK
    columns = ("target", "series", "version", "model", "age", "reason", "pinned", "pending", "flags_open", "decision")
    table = [[str(row[c]) if row[c] is not None else "-" for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) if table else len(c) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not table:
        print("(no stored baselines)")
    return EXIT_OK


def cmd_show(store: BaselineStore, args: argparse.Namespace) -> int:
    shown = []
    for record in selected(store, args):
        versions = [{"version": v.version, "active": v.active, "model": v.model, "params": v.params,
                     "trained_from": iso(v.trained_from), "trained_to": iso(v.trained_to),
                     "fingerprint": v.fingerprint, "quality": v.quality, "created_at": iso(v.created_at),
                     "reason": v.reason, "note": v.note}
                    for v in store.versions(record.target, record.key)]  # fmt: skip
        flags = [{"start": iso(f.start), "end": iso(f.end), "kind": f.kind, "accepted_at": iso(f.accepted_at),
                  "note": f.note} for f in store.flags(record.target, record.key)]  # fmt: skip
        shown.append({**summary(store, record), "labels": record.labels, "versions": versions, "flags": flags})
    if args.json:
        json.dump(shown, sys.stdout, indent=2)
        print()
        return EXIT_OK
    for item in shown:
        pin, pending = item["pinned"] or "-", item["pending"] or "-"
        print(f"{item['target']} {item['series']}  (pinned: {pin}, pending: {pending})")
        for v in item["versions"]:
            quality = ", ".join(f"{k}={q:.4g}" if isinstance(q, float) else f"{k}={q}" for k, q in v["quality"].items())
            print(
                f"  {'*' if v['active'] else ' '} v{v['version']} {v['model']:<8} created {v['created_at']} "
                f"({v['reason']}) trained {v['trained_from']} .. {v['trained_to']} fp {v['fingerprint']} {quality}"
            )
        for f in item["flags"]:
            state = f"accepted {f['accepted_at']} {f['note']}".rstrip() if f["accepted_at"] != "-" else "masked"
            print(f"    flag {f['kind']:<10} {f['start']} .. {f['end']}  {state}")
    return EXIT_OK


def cmd_accept(store: BaselineStore, args: argparse.Namespace) -> int:
    for record in selected(store, args):
        if record.pinned_version is not None:
            print(f"{record.target} {record.key}: pinned on v{record.pinned_version}; release the pin first")
            continue
        store.request(record.target, record.key, "accept", args.note, time.time())
        print(f"{record.target} {record.key}: accept queued (applied at the next refit pass)")
    return EXIT_OK


def cmd_pin(store: BaselineStore, args: argparse.Namespace) -> int:
    from analyzer.state.store import StoreError

    records = selected(store, args)
    if args.version is not None and len(records) != 1:
        raise StoreError(f"--version needs exactly one series, {len(records)} match")
    for record in records:
        store.pin(record.target, record.key, None if args.release else args.version)
        print(f"{record.target} {record.key}: " + ("pin released" if args.release else f"pinned on v{args.version}"))
    return EXIT_OK


def cmd_reset(store: BaselineStore, args: argparse.Namespace) -> int:
    for record in selected(store, args):
        store.reset(record.target, record.key)
        print(f"{record.target} {record.key}: reset (refitted from scratch at the next refit pass)")
    return EXIT_OK


ACTIONS: dict[str, Callable[[BaselineStore, argparse.Namespace], int]] = {
    "list": cmd_list, "show": cmd_show, "accept": cmd_accept, "pin": cmd_pin, "reset": cmd_reset}  # fmt: skip


def cmd_baseline(args: argparse.Namespace) -> int:
    from analyzer.state.store import StoreError

    try:
        store = open_store(args)
    except StoreError as exc:
        print(f"perfsentinel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return ACTIONS[args.baseline_command](store, args)
    except StoreError as exc:
        print(f"perfsentinel: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
