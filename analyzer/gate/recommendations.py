"""What a person should do about a regressed series: the likely cause (the nearest deployment or version
change) and the next step (investigate it, accept the new level as the baseline, or adjust the budget).

Events come from three places: ``--event TIME=TEXT`` on the command line (a CI job knows when it deployed),
an events query (``--events-query``: every change of a series' value, e.g. a deployment generation or a
build_info series appearing with a new version label) and, in selector mode, the version change itself.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from analyzer.durations import format_duration
from analyzer.gate.timewindows import Window, parse_time, rfc3339
from analyzer.series import Series, series_key

INVESTIGATE, ACCEPT_BASELINE, ADJUST_BUDGET = "investigate", "accept_baseline", "adjust_budget"


@dataclass(frozen=True)
class Event:
    timestamp: float | None  # None: a build without a timestamp in the builds file
    description: str
    source: str  # cli | query | selector | builds

    def to_json(self) -> dict:
        when = rfc3339(self.timestamp) if self.timestamp is not None else None
        return {"timestamp": when, "description": self.description, "source": self.source}


@dataclass(frozen=True)
class Recommendation:
    action: str  # investigate | accept_baseline | adjust_budget
    text: str
    command: str | None = None  # a shell command that does it, when there is one

    def to_json(self) -> dict:
        return {"action": self.action, "text": self.text, "command": self.command}


def parse_event(text: str, now: float) -> Event:
    """``TIME=description``, TIME as for windows (``now-20m``, RFC 3339, Unix seconds)."""
    when, sep, description = text.partition("=")
    if not sep or not description.strip():
        raise ValueError(f"expected TIME=description (e.g. 2026-01-05T10:00:00Z=deploy 1.5.0), got {text!r}")
    return Event(parse_time(when, now), description.strip(), "cli")


def events_from_series(series: Iterable[Series], query: str = "") -> list[Event]:
    """An event wherever a series changes value or appears after a gap (not at the start of the range)."""
    events = []
    for item in series:
        present = np.isfinite(item.values)
        previous = np.concatenate(([np.nan], item.values[:-1]))
        changed = present & (~np.isfinite(previous) | (item.values != previous))
        changed[0] = False
        name = f"{query} {series_key(item.labels)}".strip()
        for index in np.flatnonzero(changed):
            before = previous[index]
            what = "appeared" if not np.isfinite(before) else f"changed {before:g} -> {item.values[index]:g}"
            events.append(Event(float(item.timestamps[index]), f"{name} {what}", "query"))
    return sorted(events, key=lambda e: e.timestamp)


def likely_cause(events: Sequence[Event], change_start: float | None, tolerance: float) -> Event | None:
    """The last event at or before the change start (plus ``tolerance`` for coarse steps): a change cannot be
    caused by something that happened after it."""
    if change_start is None:
        return None
    before = [e for e in events if e.timestamp <= change_start + tolerance]
    return max(before, key=lambda e: e.timestamp) if before else None


def first_after(events: Sequence[Event], change_start: float | None, tolerance: float) -> Event | None:
    """The first event after the change start, named when there is none before it."""
    if change_start is None:
        return None
    after = [e for e in events if e.timestamp > change_start + tolerance]
    return min(after, key=lambda e: e.timestamp) if after else None


@dataclass(frozen=True)
class Situation:
    """What the recommendations need to know about one regressed series."""

    target: str
    series: str
    mode: str  # window | selector | stored
    change_start: float | None
    cause: Event | None
    relative_regression: bool
    budget_text: str | None  # e.g. "mean 0.34 > max 0.3", when a budget is breached
    budget_suggestion: str | None  # e.g. "max to 0.35"
    candidate_selector: str = ""
    later: Event | None = None  # the first event after the change start, when none came before it
    config_path: str | None = None  # check: the config the accept command names
    candidate: Window | None = None  # check: the candidate window
    from_store: bool = False  # the baseline came from the service's baseline store
    min_new_level: float = 0.0  # seconds at the new level before the candidate that a baseline window needs


def recommend(situation: Situation) -> list[Recommendation]:
    return [_investigate(situation), _accept(situation), *_budget(situation)]


def _investigate(s: Situation) -> Recommendation:
    if s.cause is not None and s.change_start is not None:
        lag = s.change_start - s.cause.timestamp
        when = f"{format_duration(abs(lag))} {'before' if lag >= 0 else 'after'} the change started"
        return Recommendation(
            INVESTIGATE,
            f"Likely cause: {s.cause.description} at {rfc3339(s.cause.timestamp)} "
            f"({when}). Investigate that change first.",
        )
    start = f" at {rfc3339(s.change_start)}" if s.change_start is not None else ""
    later = ""
    if s.later is not None and s.change_start is not None:
        later = (
            f" The nearest one, {s.later.description} at {rfc3339(s.later.timestamp)}, came "
            f"{format_duration(s.later.timestamp - s.change_start)} after the change started, so it is "
            "unlikely to be the cause."
        )
    return Recommendation(
        INVESTIGATE,
        f"No deployment or version change found before the change started{start}.{later} "
        "Investigate what was deployed or changed then; pass --event or --events-query so the next report "
        "names it.",
    )


def _accept(s: Situation) -> Recommendation:
    intro = f"If the new level of {s.target} {s.series} is intended, accept it as the baseline"
    if s.from_store and s.config_path:
        command = shlex.join(["perfsentinel", "baseline", "accept", "--config", s.config_path, s.target, s.series])
        return Recommendation(
            ACCEPT_BASELINE,
            f"{intro} in the service's baseline store (the service refits on the new level at its next pass): "
            f"{command}",
            command,
        )
    if s.candidate is not None and s.config_path and s.change_start is not None:
        return _accept_window(s, intro)
    # once and backtest: no check to rerun, the service's store decides
    return Recommendation(
        ACCEPT_BASELINE,
        f"{intro}: with a baseline store, perfsentinel baseline accept (with the service's config) {s.target} "
        f"'{s.series}'; without one the next refit after the change adopts it.",
    )


def _accept_window(s: Situation, intro: str) -> Recommendation:
    """The same check against the level since the change: now, when the change began before the candidate;
    otherwise for the next window (there is no data at the new level outside this candidate yet)."""
    candidate, start = s.candidate, s.change_start
    assert candidate is not None and start is not None and s.config_path
    args = ["perfsentinel", "check", "--config", s.config_path, "--target", s.target]
    selector = s.candidate_selector if s.mode == "selector" and s.candidate_selector.strip("{}") else ""
    if selector:
        args += ["--baseline-selector", selector.strip("{}"), "--candidate-selector", selector.strip("{}")]
    if start <= candidate.start - s.min_new_level:
        args += ["--candidate", _span(candidate.start, candidate.end), "--baseline", _span(start, candidate.start)]
        command = shlex.join(args)
        return Recommendation(
            ACCEPT_BASELINE, f"{intro}: compare with the level since the change ({rfc3339(start)}): {command}", command
        )
    following = candidate.end + candidate.length
    args += ["--candidate", _span(candidate.end, following), "--baseline", _span(start, candidate.end)]
    command = shlex.join(args)
    return Recommendation(
        ACCEPT_BASELINE,
        f"{intro}: the new level has no data before this candidate yet, so check the next window against the "
        f"level since the change ({rfc3339(start)}); from {rfc3339(following)} on: {command}",
        command,
    )


def _span(start: float, end: float) -> str:
    return f"{rfc3339(start)}:{rfc3339(end)}"


def _budget(s: Situation) -> list[Recommendation]:
    if s.budget_text is None:
        return []
    text = f"Budget breached ({s.budget_text}). If this cost is accepted, raise targets[{s.target}].check.budget"
    if s.budget_suggestion:
        text = text.replace("raise ", "set ") + f".{s.budget_suggestion}"
    return [Recommendation(ADJUST_BUDGET, text + "; otherwise fix the regression before merging.")]
