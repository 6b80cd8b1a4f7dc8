"""RobustBaselineDetector: median/MAD z-scores, outliers kept out, level shifts."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.registry import DetectorConfigError
from lupus_stream.detection.robust import RobustBaselineDetector, RobustParams


def noisy(n: int, seed: int, mean: float = 100.0, sd: float = 1.0) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).normal(mean, sd, n)]


def anomalies(verdicts: list[Verdict | None]) -> list[int]:
    return [i for i, v in enumerate(verdicts) if v is not None and v.anomalous]


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_clean_noisy_series_is_quiet(seed: int) -> None:
    xs = noisy(500, seed)
    verdicts = RobustBaselineDetector().update_many(range(500), xs)
    assert anomalies(verdicts) == []
    assert all(v is not None and 0.0 <= v.score <= 1.0 for v in verdicts)


def test_false_positive_rate_on_gaussian_noise() -> None:
    # documented: about 1e-3 per point with window 28 (the MAD is estimated, not known)
    flagged = 0
    for seed in range(40):
        xs = noisy(1000, 1000 + seed)
        flagged += len(anomalies(RobustBaselineDetector().update_many(range(1000), xs)))
    assert flagged / 40_000 < 2.5e-3


def test_warm_up_is_quiet() -> None:
    d = RobustBaselineDetector(RobustParams(min_history=7))
    verdicts = d.update_many(range(7), [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1e6])
    assert all(v is not None and v.score == 0.0 and not v.anomalous for v in verdicts)
    assert "warming up" in verdicts[0].detail  # type: ignore[union-attr]


@pytest.mark.parametrize("jump", [12.0, -12.0])
def test_spike_and_drop_are_caught_without_moving_the_baseline(jump: float) -> None:
    xs = noisy(200, 5)
    xs[150] += jump
    d = RobustBaselineDetector()
    verdicts = d.update_many(range(200), xs)
    assert anomalies(verdicts) == [150]
    spike = verdicts[150]
    assert spike is not None
    assert spike.kind == "outlier" and spike.score > 0.9999 and spike.changepoint_at is None
    assert spike.value == xs[150]
    assert spike.expected is not None and spike.lower is not None and spike.upper is not None
    assert spike.lower < spike.expected < spike.upper
    assert abs(spike.expected - 100.0) < 1.0
    assert not (spike.lower <= spike.value <= spike.upper)
    # the outlier did not enter the window
    assert xs[150] not in d.state.values
    after = verdicts[151]
    assert after is not None and abs(after.expected - spike.expected) < 0.5  # type: ignore[operator]


def test_score_grows_with_distance() -> None:
    base = noisy(50, 11)
    scores = []
    for jump in (0.5, 2.0, 4.0, 8.0):
        d = RobustBaselineDetector()
        d.update_many(range(50), base)
        v = d.update(50.0, 100.0 + jump)
        assert v is not None
        scores.append(v.score)
    assert scores == sorted(scores)
    assert 0.0 <= scores[0] < 0.9 and scores[-1] > 0.999


def test_level_shift_places_changepoint_at_first_shifted_point() -> None:
    xs = noisy(200, 8) + noisy(100, 9, mean=120.0)
    ts = [1_700_000_000.0 + 3600.0 * i for i in range(300)]
    d = RobustBaselineDetector(RobustParams(shift_after=3))
    verdicts = d.update_many(ts, xs)
    assert anomalies(verdicts) == [200, 201, 202]
    first, shift = verdicts[200], verdicts[202]
    assert first is not None and first.kind == "outlier"
    assert shift is not None and shift.kind == "level_shift"
    assert shift.changepoint_at == ts[200]
    assert "up" in shift.detail
    # the window restarted from the shifted points, and the baseline follows the new level
    at_shift = RobustBaselineDetector(RobustParams(shift_after=3))
    at_shift.update_many(ts[:203], xs[:203])
    assert at_shift.state.values == xs[200:203]
    assert all(v is not None and v.score == 0.0 for v in verdicts[203:207])  # re-warming
    last = verdicts[-1]
    assert last is not None and last.expected is not None
    assert abs(last.expected - 120.0) < 1.0
    assert sum(v is not None and v.kind == "level_shift" for v in verdicts) == 1


def test_level_shift_down() -> None:
    xs = noisy(100, 12) + noisy(50, 13, mean=50.0)
    verdicts = RobustBaselineDetector().update_many(range(150), xs)
    shift = verdicts[102]
    assert shift is not None and shift.kind == "level_shift" and shift.changepoint_at == 100
    assert "down" in shift.detail
    assert anomalies(verdicts) == [100, 101, 102]


def test_alternating_outliers_are_not_a_shift() -> None:
    xs = noisy(100, 14)
    xs[60], xs[61], xs[62], xs[63] = 150.0, 50.0, 150.0, 50.0
    verdicts = RobustBaselineDetector().update_many(range(100), xs)
    assert anomalies(verdicts) == [60, 61, 62, 63]
    assert all(v is None or v.kind == "outlier" for v in verdicts)


def test_normal_point_breaks_the_run_but_missing_does_not() -> None:
    xs: list[float | None] = list(noisy(100, 15))
    xs[50], xs[51], xs[52], xs[53] = 150.0, 150.0, 100.0, 150.0  # broken by a normal point
    xs[70], xs[71], xs[72], xs[73] = 150.0, None, 150.0, 150.0  # a gap is not a break
    verdicts = RobustBaselineDetector().update_many(range(100), xs)
    assert all(v is None or v.kind == "outlier" for v in verdicts[:70])
    assert verdicts[71] is None
    shift = verdicts[73]
    assert shift is not None and shift.kind == "level_shift" and shift.changepoint_at == 70


def test_flat_series_floor() -> None:
    d = RobustBaselineDetector()
    d.update_many(range(30), [100.0] * 30)
    tiny = d.update(30.0, 100.0 + 1e-7)
    assert tiny is not None and not tiny.anomalous and math.isfinite(tiny.score)
    jump = d.update(31.0, 110.0)
    assert jump is not None and jump.anomalous

    zero = RobustBaselineDetector()
    zero.update_many(range(30), [0.0] * 30)
    noise = zero.update(30.0, 1e-12)
    assert noise is not None and not noise.anomalous
    real = zero.update(31.0, 1.0)
    assert real is not None and real.anomalous


def test_mostly_constant_series_uses_mean_deviation() -> None:
    xs = [5.0, 5.0, 6.0] * 20  # MAD is 0, but a 6 is ordinary here
    d = RobustBaselineDetector()
    verdicts = d.update_many(range(60), xs)
    assert anomalies(verdicts) == []
    ordinary = verdicts[-1]
    assert ordinary is not None and 0.0 < ordinary.score < 0.999
    big = d.update(60.0, 9.0)
    assert big is not None and big.anomalous


def test_missing_gives_no_verdict() -> None:
    d = RobustBaselineDetector()
    assert d.update(0.0, None) is None
    assert d.update(1.0, math.nan) is None
    assert d.state.values == []


def test_window_is_bounded() -> None:
    d = RobustBaselineDetector(RobustParams(window=10, min_history=5))
    d.update_many(range(100), noisy(100, 16))
    assert len(d.state.values) == 10


def test_update_many_equals_update_and_round_trip() -> None:
    xs = noisy(150, 17) + noisy(150, 18, mean=90.0)
    xs[40] = 130.0
    ts = [float(i) for i in range(300)]
    one = RobustBaselineDetector()
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    assert RobustBaselineDetector().update_many(ts, xs) == expected
    assert len(anomalies(expected)) >= 4

    for cut in (5, 41, 151, 152):
        d = RobustBaselineDetector()
        d.update_many(ts[:cut], xs[:cut])
        data = d.to_bytes()
        restored = registry.restore(data)
        assert isinstance(restored, RobustBaselineDetector)
        assert restored.update_many(ts[cut:], xs[cut:]) == expected[cut:]
        again = RobustBaselineDetector.from_bytes(data)
        assert again.update_many(ts[cut:], xs[cut:]) == expected[cut:]


def test_fast_enough() -> None:
    xs = noisy(20_000, 19)
    d = RobustBaselineDetector()
    start = time.perf_counter()
    d.update_many(range(20_000), xs)
    per_point = (time.perf_counter() - start) / 20_000
    assert per_point < 50e-6


def test_params_are_validated() -> None:
    assert registry.parse_params("robust", {}) == RobustParams()
    assert RobustParams() == RobustParams(window=28, threshold=4.5, min_history=7, shift_after=3)
    for bad, field in (
        ({"window": 2}, "window"),
        ({"threshold": 0}, "threshold"),
        ({"shift_after": 0}, "shift_after"),
        ({"min_history": "seven"}, "min_history"),
        ({"treshold": 3}, "treshold"),
    ):
        with pytest.raises(DetectorConfigError) as exc:
            registry.parse_params("robust", bad)
        assert exc.value.field == field, bad
    with pytest.raises(DetectorConfigError) as exc:
        registry.parse_params("robust", {"window": 10, "min_history": 20})
    assert "min_history" in str(exc.value)
