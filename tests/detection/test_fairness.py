"""FairnessGapDetector: accuracy gap between the best and worst group per window."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.fairness import FairnessGapDetector, FairnessParams
from lupus_stream.detection.registry import DetectorConfigError


def grouped(n: int, accuracy: dict[str, float], seed: int) -> list[Any]:
    """`n` outcomes, groups drawn uniformly, each right with its group's accuracy."""
    rng = np.random.default_rng(seed)
    names = sorted(accuracy)
    groups = rng.choice(names, size=n)
    draws = rng.random(n)
    return [(str(g), float(u < accuracy[str(g)])) for g, u in zip(groups, draws, strict=True)]


def thousand() -> FairnessGapDetector:
    """Windows of 1000 outcomes at 0.99 confidence (the defaults are 2000 and 0.999)."""
    return FairnessGapDetector(FairnessParams(window=1000, confidence=0.99))


def closed(d: FairnessGapDetector, xs: list[Any]) -> list[Verdict]:
    return [v for v in d.update_many([float(i) for i in range(len(xs))], xs) if v is not None]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_equal_groups_are_quiet(seed: int) -> None:
    verdicts = closed(thousand(), grouped(5000, {"eu": 0.8, "us": 0.8}, seed))
    assert len(verdicts) == 5
    for v in verdicts:
        assert v.kind == "fairness_gap" and not v.anomalous
        assert v.value is not None and 0.0 <= v.value < 0.1
        assert v.upper == 0.1 and 0.0 <= v.score <= 1.0


def test_false_alarm_rate_with_four_equal_groups() -> None:
    # the best and worst of four groups are chosen after the fact: the score is
    # Bonferroni-corrected, so false alarms stay near 1 - confidence
    acc = {"east": 0.78, "north": 0.78, "south": 0.78, "west": 0.78}
    verdicts = closed(thousand(), grouped(300_000, acc, 11))
    assert len(verdicts) == 300
    assert sum(v.anomalous for v in verdicts) / 300 <= 0.02


def test_score_is_corrected_for_picking_the_extremes() -> None:
    two = [("a", 1.0)] * 160 + [("a", 0.0)] * 40 + [("b", 1.0)] * 140 + [("b", 0.0)] * 60
    (v2,) = closed(FairnessGapDetector(FairnessParams(window=400)), two)
    z = 0.1 / math.sqrt(0.75 * 0.25 * (2 / 200))
    tail = 0.5 * math.erfc(z / math.sqrt(2))
    assert v2.score == pytest.approx(1 - 2 * tail)  # two groups: the two-sided test
    extra = [("c", 1.0)] * 150 + [("c", 0.0)] * 50 + [("d", 1.0)] * 150 + [("d", 0.0)] * 50
    (v4,) = closed(FairnessGapDetector(FairnessParams(window=800)), two + extra)
    assert v4.value == pytest.approx(0.1)
    assert v4.score == pytest.approx(1 - 12 * tail)


def test_gap_fires_and_names_groups() -> None:
    acc = {"apac": 0.65, "eu": 0.85, "us": 0.84}
    (v,) = closed(thousand(), grouped(1000, acc, 4))
    assert v.anomalous and v.kind == "fairness_gap"
    assert v.value is not None and 0.12 < v.value < 0.3
    assert v.score > 0.99
    assert "worst apac" in v.detail
    assert "best eu" in v.detail or "best us" in v.detail


def test_small_gap_is_quiet_even_if_significant() -> None:
    rows = [("a", 1.0)] * 9000 + [("a", 0.0)] * 1000 + [("b", 1.0)] * 8500 + [("b", 0.0)] * 1500
    (v,) = closed(FairnessGapDetector(FairnessParams(window=20_000)), rows)
    assert v.value == pytest.approx(0.05) and v.score > 0.99 and not v.anomalous


def test_large_gap_on_small_groups_is_noise() -> None:
    rows = [("a", 1.0)] * 24 + [("a", 0.0)] * 6 + [("b", 1.0)] * 20 + [("b", 0.0)] * 10
    (v,) = closed(FairnessGapDetector(FairnessParams(window=60)), rows)
    assert v.value == pytest.approx(0.8 - 2 / 3)
    assert v.score < 0.99 and not v.anomalous


def test_small_groups_are_ignored() -> None:
    rows = grouped(980, {"eu": 0.8, "us": 0.8}, 5) + [("tiny", 0.0)] * 20
    (v,) = closed(thousand(), rows)
    assert not v.anomalous and "tiny" not in v.detail


def test_fewer_than_two_eligible_groups_is_quiet() -> None:
    rows = [("eu", 1.0)] * 990 + [("us", 0.0)] * 10
    (v,) = closed(thousand(), rows)
    assert v.score == 0.0 and not v.anomalous and v.value is None
    assert "fewer than 2 groups" in v.detail


def test_missing_group_and_outcome() -> None:
    d = FairnessGapDetector(FairnessParams(window=10, min_group_size=1))
    assert d.update(0.0, ("eu", None)) is None
    assert d.update(0.0, ("eu", math.nan)) is None
    d.update(0.0, (None, 1.0))
    assert d.state.group_n == {"__missing__": 1}
    with pytest.raises(ValueError):
        d.update(1.0, ("eu", -0.5))


def test_window_resets() -> None:
    d = FairnessGapDetector(FairnessParams(window=100))
    closed(d, grouped(100, {"a": 0.5, "b": 0.9}, 6))
    assert d.state.n == 0 and d.state.group_n == {}


def test_update_many_equals_update_and_round_trip() -> None:
    xs = grouped(1500, {"a": 0.8, "b": 0.8}, 7) + grouped(1500, {"a": 0.9, "b": 0.6}, 8)
    ts = [float(i) for i in range(len(xs))]
    params = FairnessParams(window=500)
    one = FairnessGapDetector(params)
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    assert FairnessGapDetector(params).update_many(ts, xs) == expected
    assert any(v is not None and v.anomalous for v in expected)

    for cut in (250, 1500, 2222):
        d = FairnessGapDetector(params)
        d.update_many(ts[:cut], xs[:cut])
        restored = registry.restore(d.to_bytes())
        assert isinstance(restored, FairnessGapDetector) and restored.params == params
        assert restored.update_many(ts[cut:], xs[cut:]) == expected[cut:]
        again = FairnessGapDetector.from_bytes(d.to_bytes())
        assert again.update_many(ts[cut:], xs[cut:]) == expected[cut:]


def test_params_are_validated() -> None:
    assert FairnessParams() == FairnessParams(
        window=2000, max_gap=0.1, min_group_size=30, confidence=0.999
    )
    assert registry.parse_params("fairness", {"max_gap": 0.2}) == FairnessParams(max_gap=0.2)
    for bad, field in (
        ({"window": 5}, "window"),
        ({"max_gap": 0}, "max_gap"),
        ({"min_group_size": 0}, "min_group_size"),
        ({"confidence": 1}, "confidence"),
        ({"group": "region"}, "group"),
    ):
        with pytest.raises(DetectorConfigError) as exc:
            registry.parse_params("fairness", bad)
        assert exc.value.field == field, bad
