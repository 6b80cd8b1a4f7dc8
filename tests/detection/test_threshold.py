"""ThresholdDetector: fixed bounds, no learning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.registry import DetectorConfigError
from lupus_stream.detection.threshold import ThresholdDetector, ThresholdParams


def test_inside_is_quiet_outside_is_anomalous() -> None:
    d = ThresholdDetector(ThresholdParams(lower=0.25, upper=0.9))
    inside = d.update(0.0, 0.5)
    assert inside is not None
    assert not inside.anomalous and inside.score == 0.0
    assert (inside.value, inside.lower, inside.upper, inside.kind) == (0.5, 0.25, 0.9, "threshold")

    low = d.update(1.0, 0.1)
    high = d.update(2.0, 0.95)
    assert low is not None and high is not None
    assert low.anomalous and low.score == 1.0 and low.kind == "threshold"
    assert high.anomalous and high.score == 1.0
    assert "below" in low.detail and "above" in high.detail


def test_bounds_are_inclusive_and_one_sided() -> None:
    d = ThresholdDetector(ThresholdParams(lower=0.25))
    edge = d.update(0.0, 0.25)
    huge = d.update(1.0, 1e12)
    assert edge is not None and not edge.anomalous
    assert huge is not None and not huge.anomalous
    assert huge.upper is None

    only_upper = ThresholdDetector(ThresholdParams(upper=10))
    v = only_upper.update(0.0, -1e9)
    assert v is not None and not v.anomalous


def test_a_threshold_without_bounds_is_refused() -> None:
    """It could never fire: a monitor that names neither bound is a mistake."""
    with pytest.raises(DetectorConfigError, match="a threshold needs lower, upper or both"):
        registry.parse_params("threshold", {})
    with pytest.raises(ValueError, match="needs lower, upper or both"):
        ThresholdDetector()


def test_missing_gives_no_verdict() -> None:
    d = ThresholdDetector(ThresholdParams(lower=0.0))
    assert d.update(0.0, None) is None
    assert d.update(1.0, math.nan) is None


def test_update_many_equals_update_and_round_trip() -> None:
    values = np.random.default_rng(7).normal(0, 1, 200).tolist()
    ts = [float(i) for i in range(200)]
    params = ThresholdParams(lower=-1.5, upper=2.0)
    one = ThresholdDetector(params)
    expected = [one.update(t, x) for t, x in zip(ts, values, strict=True)]
    assert ThresholdDetector(params).update_many(ts, values) == expected
    assert any(v is not None and v.anomalous for v in expected)

    d = ThresholdDetector(params)
    d.update_many(ts[:100], values[:100])
    data = d.to_bytes()
    restored = registry.restore(data)
    assert isinstance(restored, ThresholdDetector)
    assert restored.params == params
    assert ThresholdDetector.from_bytes(data).update_many(ts[100:], values[100:]) == expected[100:]
    assert restored.update_many(ts[100:], values[100:]) == expected[100:]


def test_params_are_validated() -> None:
    assert registry.parse_params("threshold", {"lower": 0.25}) == ThresholdParams(lower=0.25)
    with pytest.raises(DetectorConfigError) as exc:
        registry.parse_params("threshold", {"lowr": 0.25})
    assert exc.value.field == "lowr"
    with pytest.raises(DetectorConfigError) as exc:
        registry.parse_params("threshold", {"lower": "much"})
    assert exc.value.field == "lower"
    with pytest.raises(DetectorConfigError) as exc:
        registry.parse_params("threshold", {"lower": 2, "upper": 1})
    assert "lower" in str(exc.value) and "upper" in str(exc.value)
