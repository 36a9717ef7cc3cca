import numpy as np
import pytest

from analyzer.detection.scoring import anomaly_scores, gated_band
from analyzer.models import Band
from analyzer.models.quality import FLAT, TOO_MANY_GAPS, TOO_SHORT, insufficiency

BAND = Band(np.array([10.0, 10.0, 10.0, 10.0]), np.array([8.0, 8.0, 8.0, 8.0]), np.array([14.0, 14.0, 14.0, 14.0]))
VALUES = np.array([10.0, 14.0, 6.0, np.nan])


@pytest.mark.parametrize(
    ("direction", "expected"),
    [("lower_is_better", [0.0, 1.0, 0.0]), ("higher_is_better", [0.0, 0.0, 2.0]), ("both", [0.0, 1.0, 2.0])],
)
def test_scores_are_in_band_half_widths_in_the_bad_direction(direction, expected):
    scores = anomaly_scores(VALUES, BAND, direction)
    assert np.allclose(scores[:3], expected)
    assert np.isnan(scores[3])  # a missing value is not a zero


def test_min_abs_and_rel_deviation_widen_the_band():
    band = gated_band(BAND, min_abs_deviation=5.0, min_rel_deviation=0.0)
    assert np.allclose(band.upper, 15.0) and np.allclose(band.lower, 5.0)
    assert anomaly_scores(np.array([14.0]), Band(*(a[:1] for a in (band.expected, band.lower, band.upper))), "both")[
        0
    ] == pytest.approx(0.8)
    rel = gated_band(BAND, 0.0, 0.5)
    assert np.allclose(rel.upper, 15.0) and np.allclose(rel.lower, 5.0)


def test_zero_width_band_gives_infinite_score_only_when_deviating():
    band = Band(np.array([1.0, 1.0]), np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    scores = anomaly_scores(np.array([1.0, 2.0]), band, "both")
    assert scores[0] == 0 and np.isinf(scores[1])


STEP = 300.0


def test_quality_reasons():
    day = int(86400 / STEP)
    ok = np.sin(np.arange(3 * day))
    assert insufficiency(ok, STEP, 2 * 86400, 0.5) is None
    assert insufficiency(ok[-day:], STEP, 2 * 86400, 0.5) == TOO_SHORT
    late_start = np.concatenate([np.full(2 * day, np.nan), ok[:day]])
    assert insufficiency(late_start, STEP, 2 * 86400, 0.5) == TOO_SHORT  # appeared a day ago
    gappy = ok.copy()
    gappy[::3] = np.nan
    gappy[1::3] = np.nan
    assert insufficiency(gappy, STEP, 2 * 86400, 0.5) == TOO_MANY_GAPS
    assert insufficiency(np.full(3 * day, 0.0), STEP, 2 * 86400, 0.5) == FLAT
    assert insufficiency(np.full(3 * day, np.nan), STEP, 2 * 86400, 0.5) == TOO_SHORT


def test_the_scalar_anomaly_score_is_the_array_one():
    """analyzer.detection.scoring.anomaly_score (the score job's one latest sample) agrees with anomaly_scores on
    every kind of value: inside, beyond either edge, on a band of zero width, NaN, +-Inf, a NaN expected value."""
    import math

    from analyzer.detection.scoring import anomaly_score

    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(1.0, 0.5, 200), [np.nan, np.inf, -np.inf, 1.0, 1.2, 0.8]])
    for expected, half_up, half_down in [(1.0, 0.1, 0.2), (1.0, 0.0, 0.0), (np.nan, 0.1, 0.1), (1.0, np.inf, 0.1)]:
        lower, upper = expected - half_down, expected + half_up
        band = Band(np.full(values.size, expected), np.full(values.size, lower), np.full(values.size, upper))
        for direction in ("lower_is_better", "higher_is_better", "both"):
            array = anomaly_scores(values, band, direction)
            scalar = [anomaly_score(float(v), expected, lower, upper, direction) for v in values]
            for a, s in zip(array, scalar, strict=True):
                assert (math.isnan(a) and math.isnan(s)) or a == s, (expected, direction, a, s)
