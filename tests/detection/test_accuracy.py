"""AccuracyDetector: per-window accuracy against the reference windows."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.accuracy import AccuracyDetector, AccuracyParams
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.registry import DetectorConfigError


def outcomes(n: int, accuracy: float, seed: int) -> list[float]:
    return [float(v) for v in np.random.default_rng(seed).random(n) < accuracy]


def closed(d: AccuracyDetector, xs: list[float], start: int = 0) -> list[Verdict]:
    verdicts = d.update_many([float(start + i) for i in range(len(xs))], xs)
    return [v for v in verdicts if v is not None]


def test_reference_windows_are_quiet_and_carry_the_accuracy() -> None:
    d = AccuracyDetector()
    verdicts = d.update_many(range(1000), [1.0] * 400 + [0.0] * 100 + [1.0] * 500)
    ref = [v for v in verdicts if v is not None]
    assert [i for i, v in enumerate(verdicts) if v is not None] == [499, 999]
    assert [v.value for v in ref] == [0.8, 1.0]
    assert all(not v.anomalous and v.score == 0.0 and v.kind == "accuracy_decay" for v in ref)
    assert "reference window 2/2" in ref[1].detail


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_stable_accuracy_is_quiet(seed: int) -> None:
    d = AccuracyDetector()
    verdicts = closed(d, outcomes(6000, 0.85, seed))
    assert len(verdicts) == 12
    for v in verdicts[2:]:
        assert not v.anomalous
        assert v.expected is not None and abs(v.expected - 0.85) < 0.03
        assert 0.0 <= v.score <= 1.0


def test_drop_of_fifteen_points_fires() -> None:
    d = AccuracyDetector()
    closed(d, outcomes(1000, 0.85, 4))
    (v,) = closed(d, outcomes(500, 0.70, 5), start=1000)
    assert v.anomalous and v.kind == "accuracy_decay"
    assert v.value is not None and v.expected is not None and v.lower is not None
    assert abs(v.value - 0.70) < 0.05 and abs(v.expected - 0.85) < 0.03
    assert v.lower == pytest.approx(v.expected - 0.05)
    assert v.score > 0.999
    assert "accuracy" in v.detail


def test_recovery_after_the_drop() -> None:
    d = AccuracyDetector()
    closed(d, outcomes(1000, 0.85, 6))
    bad = closed(d, outcomes(500, 0.65, 7))
    good = closed(d, outcomes(500, 0.85, 8))
    assert bad[0].anomalous and not good[0].anomalous


def test_improvement_is_not_a_decay() -> None:
    d = AccuracyDetector()
    closed(d, outcomes(1000, 0.7, 9))
    (v,) = closed(d, outcomes(500, 0.95, 10))
    assert not v.anomalous and v.score < 0.01


def test_significant_but_small_drop_is_quiet() -> None:
    # ref 90 %, window 88 %: with 20 000 outcomes per window this is not noise, but
    # it is below min_drop
    params = AccuracyParams(window=20_000, reference_windows=1)
    d = AccuracyDetector(params)
    closed(d, [1.0] * 18_000 + [0.0] * 2_000)
    (v,) = closed(d, [1.0] * 17_600 + [0.0] * 2_400)
    assert v.score > 0.99 and not v.anomalous


def test_large_drop_on_tiny_window_is_noise() -> None:
    d = AccuracyDetector(AccuracyParams(window=10, reference_windows=2))
    closed(d, [1.0] * 8 + [0.0] * 2 + [1.0] * 8 + [0.0] * 2)
    (v,) = closed(d, [1.0] * 6 + [0.0] * 4)
    assert v.expected == pytest.approx(0.8) and v.value == pytest.approx(0.6)
    assert v.score < 0.99 and not v.anomalous


def test_perfect_accuracy_everywhere_has_no_evidence() -> None:
    d = AccuracyDetector(AccuracyParams(window=10, reference_windows=1))
    verdicts = closed(d, [1.0] * 30)
    assert verdicts[-1].score == 0.0 and not verdicts[-1].anomalous


def test_fractional_and_missing_outcomes() -> None:
    d = AccuracyDetector(AccuracyParams(window=10, reference_windows=1))
    assert d.update(0.0, None) is None
    assert d.update(0.0, math.nan) is None
    verdicts = closed(d, [0.5] * 10)
    assert verdicts[0].value == pytest.approx(0.5)
    assert d.state.ref_n == 10
    with pytest.raises(ValueError):
        d.update(1.0, 1.5)


def test_update_many_equals_update_and_round_trip() -> None:
    xs = outcomes(1000, 0.85, 11) + outcomes(1000, 0.6, 12)
    ts = [float(i) for i in range(2000)]
    params = AccuracyParams(window=200, reference_windows=2)
    one = AccuracyDetector(params)
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    assert AccuracyDetector(params).update_many(ts, xs) == expected
    assert any(v is not None and v.anomalous for v in expected)

    for cut in (100, 399, 400, 1234):
        d = AccuracyDetector(params)
        d.update_many(ts[:cut], xs[:cut])
        restored = registry.restore(d.to_bytes())
        assert isinstance(restored, AccuracyDetector) and restored.params == params
        assert restored.update_many(ts[cut:], xs[cut:]) == expected[cut:]
        again = AccuracyDetector.from_bytes(d.to_bytes())
        assert again.update_many(ts[cut:], xs[cut:]) == expected[cut:]


def test_params_are_validated() -> None:
    assert AccuracyParams() == AccuracyParams(
        window=500, reference_windows=2, min_drop=0.05, confidence=0.999
    )
    assert registry.parse_params("accuracy", {"min_drop": 0.1}) == AccuracyParams(min_drop=0.1)
    for bad, field in (
        ({"window": 1}, "window"),
        ({"reference_windows": 0}, "reference_windows"),
        ({"min_drop": 0}, "min_drop"),
        ({"confidence": 1.0}, "confidence"),
        ({"confidence": 0.2}, "confidence"),
        ({"min_dorp": 0.1}, "min_dorp"),
    ):
        with pytest.raises(DetectorConfigError) as exc:
            registry.parse_params("accuracy", bad)
        assert exc.value.field == field, bad
