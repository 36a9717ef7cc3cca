"""The score run's regression evidence is the same whether assessed inline or in worker processes
(analyzer.service.assessing), warm-up replays of series seen for the first time included."""

from __future__ import annotations

from analyzer.models.fitting import FitPool
from analyzer.service.assessing import MIN_POOLED
from analyzer.service.pipeline import Analyzer
from analyzer.synthetic import generate, inject_step
from tests.generated import GeneratedReader, one_target_config

STEP = 300.0
END = 1_767_571_200.0
COUNT = MIN_POOLED + 50


def generated() -> GeneratedReader:
    """Every tenth series gets a step 5 hours before END: verdicts build up over the runs."""
    series = []
    for i in range(COUNT):
        data = generate(days=8, step=STEP, level=0.2 + 0.001 * i, noise=0.04, seed=i, end=END + 3 * 3600)
        if i % 10 == 0:
            inject_step(data, END - 5 * 3600, 0.6 + 0.05 * (i % 7))
        series.append(data)
    return GeneratedReader(series)


def runs(workers: int, reader: GeneratedReader) -> list[list[tuple]]:
    config = one_target_config("7d")
    pool = FitPool(1)
    analyzer = Analyzer(config, reader, pool=pool, clock=lambda: END)
    analyzer.assessor.workers = workers
    analyzer.refit(END)
    found = []
    try:
        for step in range(4):  # a new sample for every series in each run
            snapshot = analyzer.score(END + step * STEP)
            found.append([(r.labels["service"], r.verdict, r.severity, r.p_value, r.q_value, r.change_pct,
                           r.drift_score, r.regression_start) for r in snapshot.results])  # fmt: skip
    finally:
        analyzer.close()
    return found


def test_pooled_and_inline_evidence_give_the_same_verdicts():
    reader = generated()
    inline, pooled = runs(1, reader), runs(2, reader)
    assert pooled == inline
    last = {row[0]: row for row in inline[-1]}
    stepped = [f"s{i}" for i in range(0, COUNT, 10)]
    assert sum(last[name][2] >= 1 for name in stepped) >= 0.9 * len(stepped)  # the steps stand as regressions
    assert sum(row[2] >= 1 for name, row in last.items() if name not in stepped) <= 2  # and little else does
