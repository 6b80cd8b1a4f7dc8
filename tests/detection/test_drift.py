"""DriftDetector: PSI against a reference, missing-value rate, schema changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.drift import DriftDetector, DriftParams, psi
from lupus_stream.detection.registry import DetectorConfigError


def normal(n: int, seed: int, mean: float = 0.0, sd: float = 1.0) -> list[Any]:
    return [float(v) for v in np.random.default_rng(seed).normal(mean, sd, n)]


def categories(n: int, seed: int, p: list[float], names: str = "abcd") -> list[Any]:
    rng = np.random.default_rng(seed)
    return [str(c) for c in rng.choice(list(names[: len(p)]), size=n, p=p)]


def windows(d: DriftDetector, xs: list[Any]) -> list[Verdict]:
    verdicts = d.update_many([float(i) for i in range(len(xs))], xs)
    return [v for v in verdicts if v is not None]


def test_one_verdict_per_closed_window_after_the_reference() -> None:
    d = DriftDetector(DriftParams(reference_size=1000, window=500))
    verdicts = d.update_many(range(2999), normal(2999, 1))
    closed = [i for i, v in enumerate(verdicts) if v is not None]
    assert closed == [1499, 1999, 2499]  # the window ending at 2999 is still open
    # only edges and counts are kept once the reference is complete
    assert d.state.ref_values == []
    assert 1 <= len(d.state.edges) <= 9
    assert sum(d.state.ref_counts) == 1000


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_identical_distribution_is_quiet(seed: int) -> None:
    xs = normal(1000, 1) + normal(5000, seed)
    verdicts = windows(DriftDetector(), xs)
    assert len(verdicts) == 5
    for v in verdicts:
        assert v.kind == "data_drift" and not v.anomalous
        assert v.value is not None and v.value < 0.1
        assert 0.0 <= v.score <= 1.0
        assert v.expected == 0.0 and v.upper == 0.2


def test_shifted_normal_fires() -> None:
    xs = normal(1000, 1) + normal(1000, 2, mean=1.0)
    (v,) = windows(DriftDetector(), xs)
    assert v.anomalous and v.kind == "data_drift"
    assert v.value is not None and v.value > 0.5
    assert v.score > 0.99
    assert v.detail == f"PSI {v.value:.2f} over 1000 values vs reference of 1000"


def test_wider_distribution_fires() -> None:
    xs = normal(1000, 1) + normal(1000, 2, sd=2.0)
    (v,) = windows(DriftDetector(), xs)
    assert v.anomalous and v.kind == "data_drift"


def test_small_but_significant_shift_is_not_practical_drift() -> None:
    xs = normal(1000, 1) + normal(1000, 2, mean=0.3)
    (v,) = windows(DriftDetector(), xs)
    assert v.score > 0.99  # clearly different ...
    assert v.value is not None and v.value < 0.2  # ... but below the PSI threshold
    assert not v.anomalous


def test_large_psi_on_tiny_windows_needs_significance() -> None:
    params = DriftParams(reference_size=10, window=10, bins=5)
    xs = normal(10, 1) + normal(10, 2, mean=0.5)
    (v,) = windows(DriftDetector(params), xs)
    assert v.value is not None and v.value >= 0.2
    assert v.score < 0.99 and not v.anomalous


def test_null_scores_are_calibrated() -> None:
    scores = []
    for seed in range(60):
        (v,) = windows(DriftDetector(), normal(2000, 100 + seed))
        scores.append(v.score)
        assert not v.anomalous
    assert 0.3 < float(np.mean(scores)) < 0.7  # roughly uniform under no drift


def test_missing_rate_increase_fires() -> None:
    rng = np.random.default_rng(5)
    ref = [None if rng.random() < 0.02 else x for x in normal(1000, 1)]
    win = [None if rng.random() < 0.3 else x for x in normal(1000, 2)]
    (v,) = windows(DriftDetector(), ref + win)
    assert v.anomalous and v.kind == "missing_values"
    assert v.value is not None and v.expected is not None
    assert 0.25 < v.value < 0.35 and v.expected < 0.05
    assert v.upper == pytest.approx(v.expected + 0.1)


def test_stable_missing_rate_is_quiet() -> None:
    rng = np.random.default_rng(6)
    xs = [None if rng.random() < 0.1 else x for x in normal(3000, 1)]
    verdicts = windows(DriftDetector(), xs)
    assert len(verdicts) == 2  # the two windows after the reference
    for v in verdicts:
        assert not v.anomalous and v.kind == "data_drift"


def test_all_missing_window_reports_missing_values() -> None:
    (v,) = windows(DriftDetector(), [*normal(1000, 1), *([None] * 1000)])
    assert v.kind == "missing_values" and v.anomalous and v.value == 1.0


def test_drift_and_missing_together_names_both() -> None:
    rng = np.random.default_rng(7)
    win = [None if rng.random() < 0.5 else x for x in normal(1000, 2, mean=2.0)]
    (v,) = windows(DriftDetector(), normal(1000, 1) + win)
    assert v.anomalous and v.kind in ("data_drift", "missing_values")
    assert "PSI" in v.detail and "missing rate" in v.detail


def test_type_change_is_a_schema_change() -> None:
    xs = normal(1000, 1) + [f"{x:.3f}" for x in normal(1000, 2)]
    (v,) = windows(DriftDetector(), xs)
    assert v.anomalous and v.kind == "schema_change" and v.score == 1.0
    assert v.value == 1.0 and v.expected == 0.0
    assert "strings" in v.detail

    back = categories(1000, 3, [0.5, 0.5]) + normal(1000, 4)
    (w,) = windows(DriftDetector(), back)
    assert w.anomalous and w.kind == "schema_change" and "numbers" in w.detail


def test_a_few_wrong_types_are_not_a_schema_change() -> None:
    win: list[Any] = normal(1000, 2)
    win[::50] = ["oops"] * 20
    (v,) = windows(DriftDetector(), normal(1000, 1) + win)
    assert v.kind == "data_drift" and not v.anomalous


def test_categorical_identical_is_quiet_and_shift_fires() -> None:
    p = [0.5, 0.3, 0.15, 0.05]
    same = windows(DriftDetector(), categories(1000, 1, p) + categories(3000, 2, p))
    assert len(same) == 3 and not any(v.anomalous for v in same)

    moved = categories(1000, 1, p) + categories(1000, 2, [0.2, 0.3, 0.2, 0.3])
    (v,) = windows(DriftDetector(), moved)
    assert v.anomalous and v.kind == "data_drift" and v.value is not None and v.value > 0.2


def test_new_category_is_drift() -> None:
    ref = categories(1000, 1, [0.5, 0.5])
    win = categories(1000, 2, [0.5, 0.5])
    win[:300] = ["brand-new"] * 300
    (v,) = windows(DriftDetector(), ref + win)
    assert v.anomalous and v.kind == "data_drift"


def test_booleans_are_categories() -> None:
    rng = np.random.default_rng(8)
    ref = [bool(b) for b in rng.random(1000) < 0.2]
    same = [bool(b) for b in rng.random(1000) < 0.2]
    flipped = [bool(b) for b in rng.random(1000) < 0.6]
    d = DriftDetector()
    verdicts = windows(d, ref + same + flipped)
    assert set(d.state.ref_cats) == {"true", "false"}
    assert [v.anomalous for v in verdicts] == [False, True]


def test_discrete_numbers_bin_cleanly() -> None:
    rng = np.random.default_rng(9)
    ref = [int(v) for v in rng.integers(0, 3, 1000)]
    same = [int(v) for v in rng.integers(0, 3, 1000)]
    skewed = [int(v) for v in rng.choice(3, 1000, p=[0.7, 0.2, 0.1])]
    d = DriftDetector()
    verdicts = windows(d, ref + same + skewed)
    assert len(d.state.edges) <= 3
    assert [v.anomalous for v in verdicts] == [False, True]


def test_categories_are_capped() -> None:
    ref = [f"c{i % 150}" for i in range(1000)]
    d = DriftDetector()
    d.update_many(range(1000), ref)
    assert len(d.state.ref_cats) == 101 and "__other__" in d.state.ref_cats
    (v,) = windows(d, [f"c{i % 150}" for i in range(1000)])
    assert not v.anomalous
    assert len(d.state.win_cats) == 0  # reset after the window closed


def test_psi_of_identical_histograms_is_zero() -> None:
    assert psi([10, 20, 30], [1, 2, 3]) == (0.0, 3)
    value, used = psi([10, 0, 30], [10, 0, 0])
    assert used == 2 and value > 1.0


def test_update_many_equals_update_and_round_trip() -> None:
    rng = np.random.default_rng(10)
    xs: list[Any] = normal(600, 1) + normal(900, 2, mean=1.0)
    xs = [None if rng.random() < 0.05 else x for x in xs]
    ts = [float(i) for i in range(len(xs))]
    params = DriftParams(reference_size=300, window=200)
    one = DriftDetector(params)
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    assert DriftDetector(params).update_many(ts, xs) == expected
    assert any(v is not None and v.anomalous for v in expected)

    for cut in (150, 300, 450):
        d = DriftDetector(params)
        d.update_many(ts[:cut], xs[:cut])
        restored = registry.restore(d.to_bytes())
        assert isinstance(restored, DriftDetector) and restored.params == params
        assert restored.update_many(ts[cut:], xs[cut:]) == expected[cut:]
        again = DriftDetector.from_bytes(d.to_bytes())
        assert again.update_many(ts[cut:], xs[cut:]) == expected[cut:]


def test_params_are_validated() -> None:
    assert registry.parse_params("drift", {"window": 500}) == DriftParams(window=500)
    assert DriftParams() == DriftParams(
        reference_size=1000, window=1000, bins=10, psi_threshold=0.2, missing_threshold=0.1
    )
    for bad, field in (
        ({"bins": 1}, "bins"),
        ({"window": 0}, "window"),
        ({"psi_threshold": -1}, "psi_threshold"),
        ({"missing_threshold": 2}, "missing_threshold"),
        ({"reference": 10}, "reference"),
    ):
        with pytest.raises(DetectorConfigError) as exc:
            registry.parse_params("drift", bad)
        assert exc.value.field == field, bad
