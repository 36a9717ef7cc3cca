"""Every metric family of one analysis: the per-series, baseline and summary families together."""

from __future__ import annotations

from analyzer.results import Snapshot
from exporter.baselines import baseline_families
from exporter.families import Family, LabelCache, info_family, series_bodies, series_families, summary_families


def snapshot_families(snapshot: Snapshot, cache: LabelCache | None = None) -> list[Family]:
    """All families of one analysis; pass the same ``cache`` for every analysis to reuse rendered label sets."""
    cache = cache or LabelCache()
    bodies = series_bodies(snapshot.results, cache)
    families = [
        *series_families(snapshot.results, bodies),
        info_family(snapshot.results, bodies, cache),
        *baseline_families(snapshot.results, bodies, cache),
        *summary_families(snapshot),
    ]
    cache.next_analysis()
    return families
