"""Turns an analysis snapshot into Prometheus metric families. No statistics here: values are copied.

Each series keeps its input labels plus ``target``. Label names are made valid for the classic exposition format
(``classic_name``, Prometheus' rule for OTLP attributes), an input label that would clash with a label Perf
Sentinel adds (``RESERVED_LABELS``) is renamed ``exported_<name>`` as Prometheus does on scrape conflicts, and a
name that is still taken gets ``_2``, ``_3``, ...: two input series never export the same label set
(``distinct_bodies``). docs/metrics.md states the rule.

Families are columns: one list of rendered label sets and one list of values, so ``exporter.text`` renders a
family with a few C-level list operations instead of a Python call per sample (prometheus_client's generic
renderer took 8.9 s for 100,000 series with 7 samples each on these machines). Rendered label sets are kept
between analyses in a ``LabelCache``, since the same series come back every minute.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter

import numpy as np

from analyzer.results import STATUSES, SeriesResult, Snapshot

PREFIX = "perfsentinel_"
RENAMED_LABEL = "renamed_labels"  # added only to tell apart series whose renamed label sets coincide
SERIES_ID, SERIES_KEY = "series_id", "series_key"  # perfsentinel_series_info: a series' identity for dashboards
# labels Perf Sentinel adds, and those the text format keeps for histograms and summaries (promtool flags them)
RESERVED_LABELS = ("target", "bound", "status", "reason", "event", RENAMED_LABEL, SERIES_ID, SERIES_KEY, "le",
                   "quantile")  # fmt: skip
SERIES_KEY_MAX = 200  # characters of series_key shown; series_id tells apart the rest
SERIES_RESERVED = frozenset(RESERVED_LABELS)
CLASSIC_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
INVALID_NAME_CHARACTER = re.compile(r"[^a-zA-Z0-9_]")


@dataclass
class Family:
    """``bodies[i]`` is the rendered label set (without braces; "" for none) of the sample with ``values[i]``.

    ``repetitive`` hints that few distinct values occur (timestamps, severities), so the renderer formats each
    distinct value once."""

    name: str
    help: str
    type: str = "gauge"
    bodies: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    repetitive: bool = False

    def add(self, body: str, value: float) -> None:
        self.bodies.append(body)
        self.values.append(value)


def escape(value: str) -> str:
    """A label value for the text format: backslash, newline and double quote escaped; any other character is
    allowed, except lone surrogates (a JSON answer can carry them; they are not UTF-8 and would make the whole
    body unencodable), which become "?"."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def label_body(labels: dict[str, str]) -> str:
    """Names must be valid already (``exported_names``); values are escaped."""
    return ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())


@lru_cache(maxsize=65536)
def classic_name(name: str) -> str:
    """``name`` if it is a valid classic label name, else Prometheus' translation of an OTLP attribute name
    (otlptranslator's NormalizeLabel): each character outside [a-zA-Z0-9_] becomes "_", a leading digit gets
    "key_" in front and a leading "_" gets "key" (Prometheus exempts "__", but names starting with "__" are
    reserved for its own use, so here they get it too); an empty name becomes "key_"."""
    if CLASSIC_NAME.fullmatch(name):
        return name
    sanitized = INVALID_NAME_CHARACTER.sub("_", name)
    if not sanitized or sanitized[0] in "0123456789":
        return "key_" + sanitized
    return "key" + sanitized if sanitized[0] == "_" else sanitized


@lru_cache(maxsize=4096)  # series of a query share their label names
def exported_names(names: tuple[str, ...], reserved: frozenset[str]) -> tuple[str, ...]:
    """The exported name of each input label name: valid names that Perf Sentinel does not add are kept; the
    others, taken in sorted order, get ``classic_name``, then ``exported_`` in front if Perf Sentinel adds that
    label, then ``_2``, ``_3``, ... while the name is taken (Prometheus' OTLP translation would join the values
    of colliding names with ";" instead, which can merge two series)."""
    wanted = tuple(map(classic_name, names))
    if wanted == names and reserved.isdisjoint(names):
        return names
    kept = {name for name in names if classic_name(name) == name and name not in reserved}
    exported = {name: name for name in kept}
    taken = set(kept)
    for name in sorted(set(names) - kept):
        base = classic_name(name)
        base = f"exported_{base}" if base in reserved else base
        candidate, suffix = base, 2
        while candidate in taken or candidate in reserved:
            candidate, suffix = f"{base}_{suffix}", suffix + 1
        exported[name] = candidate
        taken.add(candidate)
    return tuple(exported[name] for name in names)


@lru_cache(maxsize=4096)
def _kept_in_order(names: tuple[str, ...], reserved: frozenset[str]) -> bool:
    """Every name is kept as it is, and they are sorted (Prometheus returns them sorted)."""
    return exported_names(names, reserved) == names and list(names) == sorted(names)


def series_labels(
    result: SeriesResult, reserved: frozenset[str] = SERIES_RESERVED, annotate: bool = False
) -> dict[str, str] | None:
    """The exported labels of a series: its input labels under their ``exported_names``, sorted by name (as
    Prometheus returns them, so that equal label sets render as equal text), then ``target``.

    With ``annotate``, a series with renamed labels also gets ``renamed_labels``, a JSON object of exported name
    -> input name, which tells apart two series whose renamed label sets coincide (``{a.b="x"}`` and
    ``{a_b="x"}``); a series without renamed labels gives None then (it needs no annotation)."""
    present = result.labels if all(result.labels.values()) else {k: v for k, v in result.labels.items() if v}
    names = tuple(present)  # an empty value is no label in Prometheus: {a=""} is the series {}
    if not annotate and _kept_in_order(names, reserved):  # the usual case, once per series: keep it short
        labels = dict(present)
        labels["target"] = result.target
        return labels
    exported = exported_names(names, reserved)
    labels = dict(sorted(zip(exported, present.values(), strict=True)))
    labels["target"] = result.target
    if annotate:
        renamed = {new: old for old, new in zip(names, exported, strict=True) if new != old}
        if not renamed:
            return None
        labels[RENAMED_LABEL] = json.dumps(renamed, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return labels


def distinct_bodies(bodies: list[str], annotated: Callable[[int], str | None]) -> list[str]:
    """``bodies`` with every label set that occurs more than once replaced by ``annotated(i)`` (the label set
    with ``renamed_labels``) where that is not None. Renaming can map two input label sets to one; the
    annotated sets differ because the input sets do. Costs one set of the bodies when nothing collides."""
    if len(set(bodies)) == len(bodies):
        return bodies
    counts = Counter(bodies)
    distinct = list(bodies)
    for index, body in enumerate(bodies):
        if counts[body] > 1:
            distinct[index] = annotated(index) or body
    return distinct


class LabelCache:
    """Rendered label sets by key, kept for the keys the latest analysis used (so it cannot grow without bound)."""

    def __init__(self) -> None:
        self._previous: dict[Hashable, str] = {}
        self._current: dict[Hashable, str] = {}

    def lookup(self, keys: list[Hashable], build: Callable[[int], str]) -> list[str]:
        """The label set of each key; ``build(i)`` renders the one for ``keys[i]`` when no analysis had it."""
        current, previous = self._current, self._previous
        found = [current.get(key) or previous.get(key) for key in keys]
        for index in [i for i, body in enumerate(found) if body is None]:
            found[index] = build(index)
        current.update(zip(keys, found, strict=True))
        return found

    def next_analysis(self) -> None:
        self._previous, self._current = self._current, {}


def series_bodies(results: Sequence[SeriesResult], cache: LabelCache) -> list[str]:
    """The rendered label set of each series, distinct for distinct series."""
    keys = [(r.target, *r.labels.items()) for r in results]
    bodies = cache.lookup(keys, lambda i: label_body(series_labels(results[i])))
    return distinct_bodies(bodies, lambda i: _annotated_body(results[i]))


def _annotated_body(result: SeriesResult) -> str | None:
    labels = series_labels(result, annotate=True)
    return None if labels is None else label_body(labels)


@dataclass(frozen=True)
class SeriesField:
    """One per-series family: its name, help, and how to read its value (None or NaN: no sample)."""

    name: str
    help: str
    value: Callable[[SeriesResult], float | None]
    repetitive: bool = False


def _change_ratio(result: SeriesResult) -> float | None:
    return None if result.change_pct is None else result.change_pct / 100.0


def _threshold_ratio(result: SeriesResult) -> float | None:
    return None if result.regression_threshold_pct is None else result.regression_threshold_pct / 100.0


SERIES_FIELDS: list[SeriesField] = [
    SeriesField("anomaly_score", "Deviation of the latest sample from its baseline in units of the band's half "
                "width, in the target's bad direction; > 1 is outside the band.", attrgetter("anomaly_score")),
    SeriesField("novelty_score", "How unlike every window of the series' last 14 days its last drift window of "
                "values is (level distribution, spread, roughness), in units of the distance its own history "
                "exceeds at the novelty alert's budget; > 1 is rarer than that.", attrgetter("novelty_score")),
    SeriesField("observed_value", "The latest sample the scores were computed from.", attrgetter("value")),
    SeriesField("observed_timestamp_seconds", "Unix time of the latest sample that was scored.",
                attrgetter("timestamp"), repetitive=True),
    SeriesField("drift_score", "Shift of the median residual over the drift window from the baseline's reference "
                "residuals, in robust-scale units; positive is worse (absolute for direction both).",
                attrgetter("drift_score")),
    SeriesField("regression_severity", "Standing regression verdict: 0 none (or potential), 1 minor, "
                "2 significant, 3 critical.", attrgetter("severity"), repetitive=True),
    SeriesField("regression_change_ratio", "Change of the recent level vs the baseline as a ratio of the expected "
                "value; positive is worse.", _change_ratio),
    SeriesField("regression_p_value", "p-value of the configured test (default Mann-Whitney U) of recent vs "
                "reference residuals, one-sided toward worse.", attrgetter("p_value")),
    SeriesField("regression_effect_size", "Hedges' g of recent vs reference residuals; positive is worse.",
                attrgetter("effect_size")),
    SeriesField("regression_confidence", "1 minus the Benjamini-Hochberg adjusted p-value over the run.",
                attrgetter("confidence")),
    SeriesField("regression_start_timestamp_seconds", "Estimated start (change point) of the standing regression.",
                attrgetter("regression_start"), repetitive=True),
    SeriesField("anomaly_threshold", "Calibrated anomaly score threshold of the series (at least 1.0): "
                "PerfSentinelAnomaly fires above it. Set at each refit from the series' own record of scores so "
                "that it is crossed at most a quarter of max_notifications_per_day times a day.",
                attrgetter("anomaly_threshold"), repetitive=True),
    SeriesField("novelty_threshold", "Calibrated novelty score threshold of the series (at least 1.0): "
                "PerfSentinelNovelty fires above it; set as perfsentinel_anomaly_threshold is, for a quarter of "
                "the budget; +Inf until the series' own record holds two days.", attrgetter("novelty_threshold"),
                repetitive=True),
    SeriesField("drift_threshold", "Calibrated drift score threshold of the series (at least 1.0), set as "
                "perfsentinel_anomaly_threshold is, for a quarter of the budget; +Inf until the series' own "
                "record holds two days.", attrgetter("drift_threshold"), repetitive=True),
    SeriesField("regression_threshold_ratio", "Calibrated change ratio a regression alert of the series needs "
                "(at least the minor tier), set as perfsentinel_anomaly_threshold is, for a quarter of the "
                "budget; for a regression that has lasted the regression window, the lower threshold calibrated "
                "on verdicts that lasted as long.", _threshold_ratio, repetitive=True),
    SeriesField("anomaly_crossings_per_day", "Realised rate: times a day the anomaly score crossed the threshold "
                "in force, over the last 14 days of the series' record (absent in its first day).",
                attrgetter("anomaly_crossings_per_day"), repetitive=True),
    SeriesField("novelty_crossings_per_day", "Realised rate of perfsentinel_novelty_threshold crossings, as "
                "perfsentinel_anomaly_crossings_per_day.", attrgetter("novelty_crossings_per_day"),
                repetitive=True),
    SeriesField("drift_crossings_per_day", "Realised rate of perfsentinel_drift_threshold crossings, as "
                "perfsentinel_anomaly_crossings_per_day.", attrgetter("drift_crossings_per_day"), repetitive=True),
    SeriesField("regression_crossings_per_day", "Realised rate of regression verdicts above "
                "perfsentinel_regression_threshold_ratio, as perfsentinel_anomaly_crossings_per_day.",
                attrgetter("regression_crossings_per_day"), repetitive=True),
    SeriesField("history_seconds", "History the series had at its last refit, from its first sample to the end "
                "of the window; a series is scored once this reaches the target's min_history (the warm-up).",
                attrgetter("history_seconds"), repetitive=True),
    SeriesField("scoring_start_timestamp_seconds", "While a series warms up (insufficient_data, too_short): when "
                "its history reaches the target's min_history; the first refit pass after it (refit_every / 4 "
                "later at most) fits its baseline and scoring starts.", attrgetter("scoring_start"),
                repetitive=True),
]  # fmt: skip


def _has_nan(values: list) -> bool:
    floats = [v for v in values if type(v) is not int]  # ints are never NaN, and numpy scalars are floats
    return bool(floats) and bool(np.isnan(np.asarray(floats, dtype=np.float64)).any())


def field_family(spec: SeriesField, results: Sequence[SeriesResult], bodies: list[str]) -> Family:
    values = list(map(spec.value, results))
    family = Family(PREFIX + spec.name, spec.help, repetitive=spec.repetitive)
    if None in values or _has_nan(values):
        pairs = [(body, v) for body, v in zip(bodies, values, strict=True) if v is not None and v == v]
        family.bodies, family.values = [b for b, _ in pairs], [v for _, v in pairs]
    else:
        family.bodies, family.values = bodies, values
    return family


def expected_family(results: Sequence[SeriesResult], bodies: list[str]) -> Family:
    family = Family(PREFIX + "expected_value", "Baseline at the latest sample: bound=expected|lower|upper.")
    scored = [
        (r, b) for r, b in zip(results, bodies, strict=True) if r.expected is not None and r.expected == r.expected
    ]
    for bound in ("expected", "lower", "upper"):
        suffix, read = f',bound="{bound}"', attrgetter(bound)
        family.bodies += [body + suffix for _, body in scored]
        family.values += [read(result) for result, _ in scored]
    return family


def status_family(results: Sequence[SeriesResult], bodies: list[str]) -> Family:
    family = Family(PREFIX + "series_status", "1 for the current status of a series (ok|insufficient_data|"
                    "error) with its reason.", repetitive=True)  # fmt: skip
    keys = [(r.status, r.reason) for r in results]
    suffixes = {key: f',status="{key[0]}",reason="{escape(key[1])}"' for key in set(keys)}
    family.bodies = [body + suffixes[key] for key, body in zip(keys, bodies, strict=True)]
    family.values = [1.0] * len(results)
    return family


def series_identity(body: str) -> str:
    """The labels ``perfsentinel_series_info`` adds to a series' label set ``body``: ``series_id``, 12 hex digits
    of a hash of the rendered label set (target included), the same for the series at every analysis and in every
    replica; and ``series_key``, its labels without ``target`` as text (``service=checkout, instance=a:9100``,
    double quotes shown as single ones), for a person choosing a series in a dashboard."""
    digest = hashlib.blake2b(body.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    pairs = re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', body)
    text = ", ".join(f"{name}={_unescaped(value)}" for name, value in pairs if name not in ("target", RENAMED_LABEL))
    text = text.replace('"', "'") or "(no labels)"
    if len(text) > SERIES_KEY_MAX:
        text = text[: SERIES_KEY_MAX - 3] + "..."
    return f',{SERIES_ID}="{digest}",{SERIES_KEY}="{escape(text)}"'


def _unescaped(value: str) -> str:
    return value.replace("\\n", " ").replace('\\"', '"').replace("\\\\", "\\")


def info_family(results: Sequence[SeriesResult], bodies: list[str], cache: LabelCache | None = None) -> Family:
    """``perfsentinel_series_info``: one sample per analysed series, whatever its status, with ``series_identity``
    (cached by label set when ``cache`` is given: the same series come back every minute)."""
    family = Family(PREFIX + "series_info", "1 for every analysed series: series_id, a stable 12-hex-digit hash "
                    "of its label set, and series_key, its labels as text; dashboards select a series by series_id "
                    "and join it to the other families with ignoring(series_id, series_key).",
                    repetitive=True)  # fmt: skip
    if cache is None:
        family.bodies = [body + series_identity(body) for body in bodies]
    else:
        identities = cache.lookup([("identity", body) for body in bodies], lambda i: series_identity(bodies[i]))
        family.bodies = [body + identity for body, identity in zip(bodies, identities, strict=True)]
    family.values = [1.0] * len(results)
    return family


def series_families(results: Sequence[SeriesResult], bodies: list[str]) -> list[Family]:
    """Per-series families; ``bodies[i]`` is the rendered label set of ``results[i]``."""
    event = Family(PREFIX + "regression_event_info", "1 for the nearest event of the target's events query "
                   "at or before the start of the standing regression (a likely cause).", repetitive=True)  # fmt: skip
    for result, body in zip(results, bodies, strict=True):
        if result.regression_event:
            event.add(f'{body},event="{escape(result.regression_event)}"', 1.0)
    singles = [field_family(spec, results, bodies) for spec in SERIES_FIELDS]
    return [*singles, expected_family(results, bodies), status_family(results, bodies), event]


def summary_families(snapshot: Snapshot) -> list[Family]:
    """Per-target counts and read outcomes of the last score run."""
    counts = Family(PREFIX + "series", "Series analyzed in the last run by target and status.")
    up = Family(PREFIX + "target_query_success", "1 when the last read of the target's query succeeded, else 0.")
    returned = Family(PREFIX + "target_series", "Series the target's query returned in the last run (0: a typo, a "
                      "renamed metric, nothing scraped yet); absent while the query fails.")  # fmt: skip
    tally: dict[tuple[str, str], int] = {}
    for result in snapshot.results:
        tally[(result.target, result.status)] = tally.get((result.target, result.status), 0) + 1
    for outcome in snapshot.targets:
        target = escape(outcome.target)
        up.add(f'target="{target}"', 1.0 if outcome.success else 0.0)
        if outcome.returned is not None:
            returned.add(f'target="{target}"', outcome.returned)
        for status in STATUSES:
            counts.add(f'target="{target}",status="{status}"', tally.get((outcome.target, status), 0))
    completed = Family(PREFIX + "last_analysis_timestamp_seconds", "Unix time the published analysis completed.")
    completed.add("", snapshot.completed_at)
    return [counts, up, returned, completed]
