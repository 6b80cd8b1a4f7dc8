"""RobustBaselineDetector: median/MAD z-scores, outliers kept out, level shifts."""

from __future__ import annotations

import math
import random
from typing import Any

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


# -- the batch path ---------------------------------------------------------------------


def odd_series(rng: random.Random, n: int) -> list[float | None]:
    """Noise with spikes, level shifts, flat stretches, gaps and values that need care."""
    level = rng.choice([0.0, 1.0, 100.0, 1e6])
    sd = rng.choice([0.0, 0.01, 1.0, 10.0]) * (abs(level) or 1.0)
    flat = rng.random() < 0.2
    xs: list[float | None] = []
    for _ in range(n):
        if rng.random() < 0.01:
            level += rng.choice([-1.0, 1.0]) * rng.uniform(5.0, 50.0) * (sd or 1.0)
        if rng.random() < 0.01:
            flat = not flat
        x: float | None = level if flat else level + rng.gauss(0.0, sd)
        r = rng.random()
        if r < 0.02:
            x = (x or 1.0) * rng.choice([0.1, 3.0, -2.0])
        elif r < 0.03:
            x = None
        elif r < 0.035:
            x = math.nan
        elif r < 0.037:
            x = rng.choice([math.inf, -math.inf, -0.0, 0.0])
        elif r < 0.05 and x is not None:
            x = float(round(x))
        xs.append(x)
    return xs


def random_params(rng: random.Random) -> RobustParams:
    window = rng.choice([3, 4, 5, 7, 8, 28, 29])
    return RobustParams(
        window=window,
        min_history=rng.randint(3, window),
        threshold=rng.choice([1.0, 3.0, 4.5]),
        shift_after=rng.choice([1, 2, 3, 5]),
    )


def same(got: list[Verdict | None], expected: list[Verdict | None]) -> bool:
    """Equal to the bit (repr tells -0.0 from 0.0 and shows NaN)."""
    return [repr(v) for v in got] == [repr(v) for v in expected]


@pytest.mark.parametrize("seed", range(60))
def test_update_batch_equals_update(seed: int) -> None:
    rng = random.Random(seed)
    params = random_params(rng)
    n = rng.randint(0, 700)
    xs = odd_series(rng, n)
    ts = [float(i) for i in range(n)]
    one = RobustBaselineDetector(params)
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    batched = RobustBaselineDetector(params)
    k = 0
    while k < n:
        step = rng.choice([1, 5, 25, 100, 1000])
        batch = batched.update_batch(ts[k : k + step], xs[k : k + step])
        assert len(batch) == len(xs[k : k + step])
        verdicts = batch.verdicts()
        assert same(verdicts, expected[k : k + step])
        assert batch.flags == [0 if v is None else 2 if v.anomalous else 1 for v in verdicts]
        k += step
        state = RobustBaselineDetector(params)
        state.update_many(ts[:k], xs[:k])
        assert batched.to_bytes() == state.to_bytes()
    assert batched.to_bytes() == one.to_bytes()


def test_update_batch_follows_shifts_and_outliers_in_the_steady_state() -> None:
    xs: list[float | None] = list(noisy(2000, 21))
    for i in range(100, 2000, 97):
        xs[i] = 130.0  # outliers now and then
    for i in range(1000, 2000):
        xs[i] = (xs[i] or 0.0) + 40.0  # a level shift
    xs[1500] = None
    ts = [float(i) for i in range(2000)]
    one = RobustBaselineDetector()
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    got = RobustBaselineDetector().update_batch(ts, xs).verdicts()
    assert same(got, expected)
    assert sum(v is not None and v.kind == "level_shift" for v in got) == 1
    assert len(anomalies(got)) > 15


def test_update_batches_equal_update_on_each() -> None:
    rng = random.Random(3)
    params = [random_params(rng) for _ in range(12)]
    singles = [RobustBaselineDetector(p) for p in params]
    batched = [RobustBaselineDetector(p) for p in params]
    for round_ in range(30):
        ts, xs = [], []
        for _ in params:
            n = rng.choice([0, 1, 3, 25, 60])
            ts.append([round_ * 100.0 + i for i in range(n)])
            xs.append(odd_series(rng, n))
        expected = [
            [d.update(t, x) for t, x in zip(tk, xk, strict=True)]
            for d, tk, xk in zip(singles, ts, xs, strict=True)
        ]
        batches = RobustBaselineDetector.update_batches(batched, ts, xs)
        for batch, want in zip(batches, expected, strict=True):
            assert same(batch.verdicts(), want)
        assert [d.to_bytes() for d in batched] == [d.to_bytes() for d in singles]


def test_update_batch_reads_other_numbers_like_update() -> None:
    xs: list[Any] = [10, 11.0, True, 9, "10.5", None, 10.0] * 5 + [40]
    ts = [float(i) for i in range(len(xs))]
    one = RobustBaselineDetector()
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    batched = RobustBaselineDetector()
    assert same(batched.update_batch(ts, xs).verdicts(), expected)
    assert batched.to_bytes() == one.to_bytes()


def test_update_batches_is_all_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    detectors = [RobustBaselineDetector() for _ in range(3)]
    for k, d in enumerate(detectors):
        d.update_many(range(40), noisy(40, 30 + k))
        d.update(40.0, 200.0)  # in a run of anomalies
    before = [d.to_bytes() for d in detectors]
    states = [d.state for d in detectors]
    real = RobustBaselineDetector.update

    def fragile(self: RobustBaselineDetector, t: float, x: Any) -> Verdict | None:
        if x == math.inf:
            raise RuntimeError("boom")
        return real(self, t, x)

    monkeypatch.setattr(RobustBaselineDetector, "update", fragile)
    xs = [[*noisy(30, 40 + k), *([math.inf] if k == 2 else []), 200.0] for k in range(3)]
    ts = [[41.0 + i for i in range(len(x))] for x in xs]
    with pytest.raises(RuntimeError, match="boom"):
        RobustBaselineDetector.update_batches(detectors, ts, xs)
    assert [d.to_bytes() for d in detectors] == before
    assert [d.state for d in detectors] == states
    assert all(d.state is s for d, s in zip(detectors, states, strict=True))


def test_update_batches_checks_its_arguments() -> None:
    d = RobustBaselineDetector()
    with pytest.raises(ValueError, match="twice"):
        RobustBaselineDetector.update_batches([d, d], [[0.0], [1.0]], [[1.0], [2.0]])
    with pytest.raises(ValueError, match="times"):
        d.update_batch([0.0, 1.0], [1.0])
    assert d.to_bytes() == RobustBaselineDetector().to_bytes()
    assert RobustBaselineDetector().update_batch([], []).verdicts() == []


def test_update_batch_goes_through_an_update_of_another_kind() -> None:
    class Doubled(RobustBaselineDetector):
        def update(self, t: float, x: Any) -> Verdict | None:
            return super().update(t, None if x is None else 2 * x)

    xs = noisy(80, 50)
    ts = [float(i) for i in range(80)]
    one = Doubled()
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    assert same(Doubled().update_batch(ts, xs).verdicts(), expected)

    patched = RobustBaselineDetector()
    patched.update = lambda t, x: None  # type: ignore[method-assign]
    assert patched.update_batch(ts, xs).verdicts() == [None] * 80
    assert patched.to_bytes() == RobustBaselineDetector().to_bytes()
