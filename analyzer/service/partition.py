"""Which part of a target a shard reads: a label matcher pushed into the query, so that N shards each read about
1/N of the samples instead of every shard reading the whole target and dropping what it does not own.

A shard owns a series by the hash of its identity (``analyzer.service.sharding``), which PromQL cannot compute.
So the shard lists the target's series with one instant query (one sample per series), finds the owners, and picks
the label whose values separate its own series best from the others' (ideally a label unique per series:
``instance``, ``pod``); the query it runs from then on has ``label=~"v1|v2|..."`` added to every vector selector
(``analyzer.prometheus.selectors.inject_matchers``). It reads its own series plus those of other shards that
share a value with one of them. When no label separates well enough (a single series, an output label made by
``label_replace``), the shard reads everything, as before.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from analyzer.prometheus.selectors import Matcher, inject_matchers

MAX_EXTRA_SHARE = 0.25  # a label is used when it makes a shard read at most 25% more series than it owns
_VALID_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class Partition:
    """The series a shard reads: those whose ``label`` has one of ``values``."""

    label: str
    values: frozenset[str]
    owned: int  # series the shard owns among them
    covered: int  # series the matcher selects (owned plus others' sharing a value)

    def query(self, query: str) -> str:
        return inject_matchers(query, (Matcher(self.label, "=~", promql_string(value_regex(self.values))),))

    def selects(self, labels: dict[str, str]) -> bool:
        return labels.get(self.label, "") in self.values

    @property
    def empty(self) -> bool:
        return not self.values


def value_regex(values: frozenset[str]) -> str:
    """An RE2 alternation that matches exactly these values (Prometheus anchors label regexes)."""
    return "|".join(re.escape(value) for value in sorted(values))


def promql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def choose_partition(series: Sequence[dict[str, str]], owned: Sequence[bool]) -> Partition | None:
    """The label that lets the owned series be read with the fewest others, from the series' labels as
    Prometheus returns them; None when none does well enough. A shard that owns nothing gets a partition without
    values: it reads nothing."""
    mine = [labels for labels, own in zip(series, owned, strict=True) if own]
    if not mine:
        return Partition("", frozenset(), 0, 0)
    best: Partition | None = None
    names = set.intersection(*(set(labels) for labels in mine)) - {"__name__"}
    for name in sorted(n for n in names if _VALID_LABEL.fullmatch(n)):
        values = frozenset(labels[name] for labels in mine)
        if "" in values:
            continue
        covered = sum(labels.get(name, "") in values for labels in series)
        if best is None or covered < best.covered:
            best = Partition(name, values, len(mine), covered)
    if best is None or best.covered > len(mine) * (1 + MAX_EXTRA_SHARE):
        return None
    return best
