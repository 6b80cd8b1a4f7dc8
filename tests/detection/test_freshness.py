"""FreshnessDetector: a daily partition must land by a local deadline."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.freshness import FreshnessDetector, FreshnessParams
from lupus_stream.detection.registry import DetectorConfigError

UTC = ZoneInfo("UTC")
HOUR = 3600.0


def at(text: str, tz: str = "UTC") -> float:
    """Epoch seconds of a local ISO time such as '2024-05-03 06:00'."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def stale(v: Verdict | None) -> Verdict:
    assert v is not None and v.anomalous and v.kind == "stale_source" and v.score == 1.0
    return v


def test_on_time_landing_is_quiet() -> None:
    d = FreshnessDetector()
    assert d.update(at("2024-05-02 05:10"), ("2024-05-01", 1000)) is None
    assert d.update(at("2024-05-03 05:50"), ("2024-05-02", 1000)) is None
    for now in ("2024-05-03 05:59", "2024-05-03 06:01", "2024-05-03 23:59"):
        assert d.check(at(now)) is None


def test_missed_day_fires_once_not_before_the_deadline() -> None:
    d = FreshnessDetector()
    d.update(at("2024-05-02 05:10"), ("2024-05-01", 1000))
    assert d.check(at("2024-05-03 00:30")) is None
    assert d.check(at("2024-05-03 06:00")) is None  # the deadline itself is still on time
    v = stale(d.check(at("2024-05-03 06:05")))
    assert v.value == pytest.approx(24 + 55 / 60)
    assert v.detail == (
        "no partition landed by 06:00 UTC on 2024-05-03; "
        "last landing 2024-05-02T05:10:00+00:00 (partition 2024-05-01)"
    )
    assert d.check(at("2024-05-03 07:00")) is None
    assert d.check(at("2024-05-03 23:00")) is None
    # the next day is missed too: reported again, once
    assert d.check(at("2024-05-04 05:00")) is None
    v2 = stale(d.check(at("2024-05-04 06:30")))
    assert "on 2024-05-04" in v2.detail
    assert d.check(at("2024-05-04 09:30")) is None


def test_recovers_on_landing() -> None:
    d = FreshnessDetector()
    d.update(at("2024-05-02 05:10"), ("2024-05-01", 1000))
    stale(d.check(at("2024-05-03 07:00")))
    v = d.update(at("2024-05-03 08:00"), ("2024-05-02", 1000))
    assert v is not None and not v.anomalous and v.score == 0.0 and v.kind == "stale_source"
    assert v.value == pytest.approx(26 + 50 / 60)
    assert "2024-05-02" in v.detail
    assert d.check(at("2024-05-03 09:00")) is None
    assert d.update(at("2024-05-04 05:00"), ("2024-05-03", 1000)) is None  # only once
    assert d.check(at("2024-05-04 07:00")) is None


def test_never_fires_before_the_first_landing() -> None:
    d = FreshnessDetector()
    for day in range(1, 10):
        assert d.check(at(f"2024-05-0{day} 12:00")) is None
    assert d.state.reported_day is None


def test_empty_partition() -> None:
    d = FreshnessDetector(FreshnessParams(min_rows=100))
    d.update(at("2024-05-02 05:10"), ("2024-05-01", 1000))
    v = d.update(at("2024-05-03 05:00"), ("2024-05-02", 3))
    assert v is not None and v.anomalous and v.kind == "empty_partition"
    assert (v.value, v.lower, v.score) == (3.0, 100.0, 1.0)
    # an empty partition is not fresh data
    stale(d.check(at("2024-05-03 06:30")))
    ok = d.update(at("2024-05-03 07:00"), ("2024-05-02", 5000))
    assert ok is not None and not ok.anomalous and ok.kind == "stale_source"

    e = FreshnessDetector()
    e.update(at("2024-05-02 05:10"), ("2024-05-01", 1000))
    empty = e.update(at("2024-05-03 05:00"), ("2024-05-02", 0))
    assert empty is not None and empty.kind == "empty_partition"
    refill = e.update(at("2024-05-03 05:30"), ("2024-05-02", 10))
    assert refill is not None and not refill.anomalous and refill.kind == "empty_partition"


def test_local_timezone_days_and_deadline() -> None:
    d = FreshnessDetector(FreshnessParams(expected_by="06:00", timezone="Europe/Berlin"))
    # 23:30 UTC on May 2 is 01:30 on May 3 in Berlin (UTC+2): a May 3 landing
    d.update(at("2024-05-02 23:30"), ("2024-05-02", 1000))
    assert d.check(at("2024-05-03 07:00", "Europe/Berlin")) is None
    # on May 4 the Berlin deadline is 04:00 UTC
    assert d.check(at("2024-05-04 03:59")) is None
    v = stale(d.check(at("2024-05-04 04:01")))
    assert "06:00 Europe/Berlin on 2024-05-04" in v.detail
    assert "2024-05-03T01:30:00+02:00" in v.detail


def test_daylight_saving_day() -> None:
    # 2024-03-31 is 23 hours long in Berlin; 06:00 local is 04:00 UTC after the switch
    d = FreshnessDetector(FreshnessParams(timezone="Europe/Berlin"))
    d.update(at("2024-03-30 05:00", "Europe/Berlin"), ("2024-03-29", 1000))
    assert d.check(at("2024-03-31 05:59", "Europe/Berlin")) is None
    stale(d.check(at("2024-03-31 06:01", "Europe/Berlin")))


def test_grace_days() -> None:
    d = FreshnessDetector(FreshnessParams(grace_days=1))
    d.update(at("2024-05-02 05:10"), ("2024-05-01", 1000))
    assert d.check(at("2024-05-03 07:00")) is None  # yesterday's landing is enough
    v = stale(d.check(at("2024-05-04 07:00")))
    assert "nor in the 1 days before" in v.detail


def test_out_of_order_landing_keeps_the_latest() -> None:
    d = FreshnessDetector()
    d.update(at("2024-05-03 05:00"), ("2024-05-02", 1000))
    d.update(at("2024-05-01 05:00"), ("2024-04-30", 1000))
    assert d.state.last_landing == at("2024-05-03 05:00")
    assert d.state.last_partition == "2024-05-02"


def test_round_trip_remembers_the_reported_day() -> None:
    params = FreshnessParams(expected_by="07:30", timezone="America/New_York")
    d = FreshnessDetector(params)
    d.update(at("2024-05-02 06:00", "America/New_York"), ("2024-05-01", 1000))
    stale(d.check(at("2024-05-03 08:00", "America/New_York")))
    data = d.to_bytes()
    restored = registry.restore(data)
    assert isinstance(restored, FreshnessDetector) and restored.params == params
    assert restored.check(at("2024-05-03 09:00", "America/New_York")) is None
    stale(restored.check(at("2024-05-04 08:00", "America/New_York")))
    again = FreshnessDetector.from_bytes(data)
    recovered = again.update(at("2024-05-03 10:00", "America/New_York"), ("2024-05-02", 1))
    assert recovered is not None and not recovered.anomalous


def test_update_many_equals_update() -> None:
    ts = [at(f"2024-05-0{day} 05:00") for day in range(1, 8)]
    xs = [(f"p{i}", [1000, 0, 1000, 5, 0, 1000, 1000][i]) for i in range(7)]
    one = FreshnessDetector()
    expected = [one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    assert FreshnessDetector().update_many(ts, xs) == expected
    assert [v is not None and v.anomalous for v in expected] == [
        False,
        True,
        False,
        False,
        True,
        False,
        False,
    ]


def test_params_are_validated() -> None:
    assert FreshnessParams() == FreshnessParams(
        expected_by="06:00", timezone="UTC", min_rows=1, grace_days=0
    )
    assert registry.parse_params("freshness", {"expected_by": "23:59"}) == FreshnessParams(
        expected_by="23:59"
    )
    for bad, field in (
        ({"expected_by": "6am"}, "expected_by"),
        ({"expected_by": "24:00"}, "expected_by"),
        ({"min_rows": -1}, "min_rows"),
        ({"grace_days": -1}, "grace_days"),
        ({"deadline": "06:00"}, "deadline"),
    ):
        with pytest.raises(DetectorConfigError) as exc:
            registry.parse_params("freshness", bad)
        assert exc.value.field == field, bad
    with pytest.raises(DetectorConfigError) as exc:
        registry.parse_params("freshness", {"timezone": "Mars/Olympus"})
    assert "timezone" in str(exc.value)
