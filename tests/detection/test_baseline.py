"""SeasonalBaselineDetector: the same time in earlier seasons, robust residual scale."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.baseline import BaselineParams, SeasonalBaselineDetector
from lupus_stream.detection.registry import DetectorConfigError
from tests.detection.synthetic import daily_with_weekly_cycle

HOUR, DAY = 3600.0, 86400.0


def test_weekends_are_not_anomalies_but_a_drop_is() -> None:
    ts, xs = daily_with_weekly_cycle(60, seed=3)
    xs[45] *= 0.7
    d = SeasonalBaselineDetector(BaselineParams(season="1w"))
    verdicts = d.update_many(ts, xs)
    flagged = [i for i, v in enumerate(verdicts) if v is not None and v.anomalous]
    assert flagged == [45]
    v = verdicts[45]
    assert v is not None and v.expected is not None
    assert v.value is not None and v.value < v.expected
    assert 0.999 < v.score <= 1.0


def test_cold_start_is_quiet_until_min_seasons() -> None:
    ts, xs = daily_with_weekly_cycle(30, seed=4)
    xs[10] *= 3  # only one earlier season exists at day 10
    verdicts = SeasonalBaselineDetector(BaselineParams(season="1w")).update_many(ts, xs)
    assert all(v is not None and v.score == 0.0 for v in verdicts[:14])
    assert "cold start" in (verdicts[3].detail if verdicts[3] else "")


def test_level_shift_is_reported_once_with_its_start_then_followed() -> None:
    rng = np.random.default_rng(5)
    ts = [h * HOUR for h in range(24 * 20)]
    xs = [50 + 20 * math.sin(2 * math.pi * h / 24) + rng.normal(0, 1) for h in range(24 * 20)]
    for h in range(24 * 14, len(xs)):
        xs[h] += 30
    d = SeasonalBaselineDetector(BaselineParams(season="1d"))
    verdicts = d.update_many(ts, xs)
    shifts = [v for v in verdicts if v is not None and v.kind == "level_shift"]
    assert len(shifts) == 1
    assert shifts[0].changepoint_at == ts[24 * 14]
    later = verdicts[24 * 15 :]
    assert sum(v is not None and v.anomalous for v in later) <= 1


def test_gaps_and_missing_points() -> None:
    ts, xs = daily_with_weekly_cycle(50, seed=6)
    d = SeasonalBaselineDetector(BaselineParams(season="1w"))
    keep = [i for i in range(50) if i % 9 != 4]  # irregular gaps
    verdicts = [d.update(ts[i], xs[i]) for i in keep]
    assert all(v is not None and not v.anomalous for v in verdicts)
    # from the third week on, every point is compared with the weeks before it
    compared = [v is not None and v.expected is not None for v in verdicts]
    assert all(c for i, c in zip(keep, compared, strict=True) if i >= 21)
    assert d.update(51 * DAY, None) is None


def test_round_trip_through_bytes_continues_identically() -> None:
    ts, xs = daily_with_weekly_cycle(60, seed=8)
    xs[50] *= 0.5
    a = SeasonalBaselineDetector(BaselineParams(season="1w"))
    a.update_many(ts[:40], xs[:40])
    b = registry.restore(a.to_bytes())
    assert isinstance(b, SeasonalBaselineDetector)
    assert a.update_many(ts[40:], xs[40:]) == b.update_many(ts[40:], xs[40:])


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"season": "weekly"}, "season"),
        ({"seasons": 0}, "seasons"),
        ({"min_seasons": 5, "seasons": 4}, "min_seasons"),
        ({"treshold": 3}, "treshold"),
    ],
)
def test_invalid_params_are_rejected(params: dict[str, object], field: str | None) -> None:
    with pytest.raises(DetectorConfigError) as info:
        registry.parse_params("baseline", params)
    assert info.value.field == field


def test_an_expected_value_of_zero_is_not_a_crash() -> None:
    d = SeasonalBaselineDetector(BaselineParams(season="1d"))
    ts = [h * HOUR for h in range(24 * 4)]
    verdicts = d.update_many(ts, [0.0] * (24 * 4))
    verdict = d.update(24 * 4 * HOUR, 5.0)
    assert verdict is not None and verdict.anomalous and "+5" in verdict.detail
    assert all(v is not None for v in verdicts)
