"""SeasonalDetector: period detection, calibrated scores, incidents, gaps, snapshots."""

from __future__ import annotations

import math

import msgspec
import numpy as np
import pytest

from lupus_stream.detection import registry
from lupus_stream.detection.base import StateError, Verdict
from lupus_stream.detection.registry import DetectorConfigError
from lupus_stream.detection.seasonal import SeasonalDetector, SeasonalParams
from tests.detection.synthetic import daily_with_weekly_cycle, hourly_daily_weekly

HOUR, DAY, WEEK = 3600.0, 86400.0, 7 * 86400.0


def flagged(verdicts: list[Verdict | None]) -> list[int]:
    return [i for i, v in enumerate(verdicts) if v is not None and v.anomalous]


@pytest.mark.parametrize("seed", [3, 7, 11])
@pytest.mark.parametrize("at", [40, 45, 55])
def test_daily_metric_weekly_cycle_drop_is_the_only_anomaly(seed: int, at: int) -> None:
    ts, xs = daily_with_weekly_cycle(60, seed)
    xs[at] *= 0.7
    d = SeasonalDetector()
    verdicts = d.update_many(ts, xs)
    assert flagged(verdicts) == [at]
    v = verdicts[at]
    assert v is not None and v.expected is not None and v.value is not None
    assert v.value < v.expected
    assert v.lower is not None and v.value < v.lower
    assert d.periods == "1w"


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_hourly_daily_weekly_trend_noise_is_quiet_for_eight_weeks(seed: int) -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 8, seed)
    d = SeasonalDetector()
    verdicts = d.update_many(ts, xs)
    assert flagged(verdicts) == []
    assert all(v is not None and 0.0 <= v.score <= 1.0 for v in verdicts)
    assert d.periods == "1d+1w"


def test_spike_in_a_seasonal_hourly_series_is_caught() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 4, seed=9)
    at = len(xs) - 30
    xs[at] += 240.0  # twelve noise sds, well inside the daily range
    verdicts = SeasonalDetector().update_many(ts, xs)
    assert flagged(verdicts) == [at]
    v = verdicts[at]
    assert v is not None and v.score > 0.5 and v.kind == "outlier"


@pytest.mark.parametrize(("before", "after"), [(100.0, 0.0), (0.0, 1000.0)])
def test_a_series_that_never_moved_is_news_when_it_breaks(before: float, after: float) -> None:
    """An `up` metric, a stuck reading: a glitch and its return, then a break that stays,
    and both are news (the glitch must not make the break routine)."""
    xs = [before] * 3000 + [after] * 20
    xs[2000] = after
    ts = [1.7e9 + 300.0 * i for i in range(len(xs))]
    verdicts = SeasonalDetector().update_many(ts, xs)
    assert flagged(verdicts)[:2] == [2000, 3000]
    v = verdicts[3000]
    assert v is not None and v.score >= 0.5  # alarms at the default sensitivity


def test_a_drop_is_news_in_a_series_whose_spikes_go_up() -> None:
    """Each side has its own tail: routine bursts upward do not make a drop routine,
    and the expected band reaches further above the model than below it."""
    rng = np.random.default_rng(3)
    hours = 24 * 7 * 3
    ts = [h * 3600.0 for h in range(hours)]
    xs = [1000.0 + 200.0 * math.sin(2 * math.pi * h / 24) + rng.normal(0, 20) for h in range(hours)]
    for h in range(30, hours - 40, 17):  # a burst of 8 to 14 noise sds every 17 hours
        xs[h] += float(rng.uniform(160, 280))
    at = hours - 20
    xs[at] -= 300.0  # fifteen noise sds down
    verdicts = SeasonalDetector().update_many(ts, xs)
    assert [i for i in flagged(verdicts) if i >= 24 * 14] == [at]
    v = verdicts[at]
    assert v is not None and v.upper is not None and v.lower is not None and v.expected is not None
    assert v.upper - v.expected > 2 * (v.expected - v.lower)


@pytest.mark.parametrize(
    ("hours_step", "make", "want"),
    [
        (1.0, lambda i: 50 + 20 * math.sin(2 * math.pi * i / 24), "1d"),
        (24.0, lambda i: 100 * (1.3 if i % 7 in (5, 6) else 1.0), "1w"),
        (1.0, lambda i: 0.0, "none"),
        (
            1.0,
            lambda i: 1000 + 200 * math.sin(2 * math.pi * i / 24) + 150 * (i % 168 >= 120),
            "1d+1w",
        ),
    ],
)
def test_period_detection(hours_step: float, make: object, want: str) -> None:
    rng = np.random.default_rng(4)
    n = 24 * 7 * 4 if hours_step == 1.0 else 60
    ts = [i * hours_step * HOUR for i in range(n)]
    assert callable(make)
    xs = [float(make(i)) + float(rng.normal(0, 2.0)) for i in range(n)]
    d = SeasonalDetector()
    d.update_many(ts, xs)
    assert d.periods == want


def test_period_is_undecided_before_three_cycles_and_can_be_fixed() -> None:
    ts = [i * HOUR for i in range(24 * 2)]
    xs = [50 + 20 * math.sin(2 * math.pi * i / 24) for i in range(len(ts))]
    auto = SeasonalDetector()
    auto.update_many(ts, xs)
    assert auto.periods is None
    fixed = SeasonalDetector(SeasonalParams(period="1d"))  # two cycles of history suffice
    fixed.update_many([i * HOUR for i in range(24 * 3)], xs + xs[:24])
    assert fixed.periods == "1d"
    none = SeasonalDetector(SeasonalParams(period="none"))
    none.update_many(ts, xs)
    assert none.periods == "none"


@pytest.mark.parametrize(("period", "want"), [("1w", "none"), ("1d+1w", "1d")])
def test_a_fixed_week_finer_than_the_history_holds_is_left_out(period: str, want: str) -> None:
    """Points a minute apart: two weeks of them are more than the history keeps, so a
    fixed weekly cycle cannot be learned; the detector goes on without it (and with the
    day, when asked for), and says so, on both paths."""
    minute = 60.0
    ts = [i * minute for i in range(3 * 1440)]
    xs = [50 + 20 * math.sin(2 * math.pi * t / DAY) + 0.5 * (i % 5) for i, t in enumerate(ts)]
    one_by_one = SeasonalDetector(SeasonalParams(period=period))
    verdicts = [one_by_one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    batched = SeasonalDetector(SeasonalParams(period=period))
    assert batched.update_many(ts, xs) == verdicts
    assert one_by_one.periods == batched.periods == want


@pytest.mark.parametrize("period", ["1d", "1w", "1d+1w"])
def test_a_fixed_cycle_over_values_beyond_float32_is_not_installed(period: str) -> None:
    """The period decision's history is float32: values beyond it are gaps, and a
    history of gaps has no profile to learn. The model stays level-only and finite."""
    ts = [i * HOUR for i in range(24 * 7 * 3)]
    xs = [1e90 * (1.0 + 0.1 * math.sin(2 * math.pi * i / 24)) for i in range(len(ts))]
    detector = SeasonalDetector(SeasonalParams(period=period))
    verdicts = detector.update_many(ts, xs)
    assert detector.periods == "none"
    assert all(
        v.expected is not None and math.isfinite(v.expected) for v in verdicts[24 * 14 :] if v
    )


def test_cold_start_is_quiet() -> None:
    d = SeasonalDetector()
    verdicts = d.update_many([i * HOUR for i in range(12)], [1.0] * 11 + [1e6])
    assert all(v is not None and v.score == 0.0 and not v.anomalous for v in verdicts)
    assert "warming up" in (verdicts[0].detail if verdicts[0] else "")


def test_gaps_keep_the_phase_and_stay_quiet() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 5, seed=3)
    keep = [i for i in range(len(ts)) if not (24 * 10 <= i < 24 * 12 or 24 * 25 <= i < 24 * 26)]
    d = SeasonalDetector()
    verdicts = d.update_many([ts[i] for i in keep], [xs[i] for i in keep])
    assert flagged(verdicts) == []
    assert d.periods is not None and "1d" in d.periods
    # missing values give no verdict and change nothing
    before = d.to_bytes()
    assert d.update(ts[-1] + HOUR, None) is None
    assert d.update(ts[-1] + HOUR, math.nan) is None
    assert d.to_bytes() == before


def test_late_and_duplicate_points_are_scored_but_not_learned() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 4, seed=6)
    d = SeasonalDetector()
    d.update_many(ts, xs)
    before = d.to_bytes()
    late = d.update(ts[-5], xs[-5])
    duplicate = d.update(ts[-1], xs[-1])
    assert late is not None and duplicate is not None
    assert not late.anomalous and not duplicate.anomalous
    assert "late" in late.detail
    assert d.to_bytes() == before
    # a late point far off the model is still reported
    assert d.update(ts[-3], xs[-3] + 2000.0).anomalous  # type: ignore[union-attr]


def test_repeats_of_one_incident_score_once_and_stay_anomalous() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 4, seed=8)
    start = len(xs) - 40
    for i in range(start, start + 3):
        xs[i] += 300.0
    d = SeasonalDetector()
    verdicts = d.update_many(ts, xs)
    flags = flagged(verdicts)
    assert flags[:3] == [start, start + 1, start + 2]  # the alert stays firing
    assert not any(v is not None and v.anomalous for v in verdicts[start + 6 :])
    scored = [i for i, v in enumerate(verdicts) if v is not None and v.score >= 0.5]
    assert scored[0] == start  # the onset is new evidence, its repeats are not
    assert start + 1 not in scored
    # three equal points are a level for a while, placed at its first point, and the
    # return is a change back, placed where it began
    placed = [v.changepoint_at for v in verdicts if v is not None and v.kind == "level_shift"]
    assert placed == [ts[start], ts[start + 3]]


def test_level_shift_is_reported_with_its_start_and_then_followed() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 5, seed=12)
    start = 24 * 7 * 4
    for i in range(start, len(xs)):
        xs[i] += 600.0
    d = SeasonalDetector()
    verdicts = d.update_many(ts, xs)
    shifts = [v for v in verdicts if v is not None and v.kind == "level_shift"]
    assert len(shifts) == 1
    assert shifts[0].changepoint_at == ts[start]
    assert flagged(verdicts)[0] == start
    assert not any(v is not None and v.anomalous for v in verdicts[start + 48 :])


def test_sensitivity_orders_alerts() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 4, seed=13)
    rng = np.random.default_rng(13)
    for i in rng.choice(np.arange(24 * 8, len(xs)), 12, replace=False):
        xs[int(i)] += float(rng.uniform(60, 200))
    counts = []
    for sensitivity in (0.1, 0.5, 0.9):
        d = SeasonalDetector(SeasonalParams(sensitivity=sensitivity))
        counts.append(len(flagged(d.update_many(ts, xs))))
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_score_grows_with_distance() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 4, seed=14)
    base = SeasonalDetector()
    base.update_many(ts[:-1], xs[:-1])
    snapshot = base.to_bytes()
    scores = []
    for jump in (0.0, 60.0, 120.0, 400.0):
        d = SeasonalDetector.from_bytes(snapshot)
        v = d.update(ts[-1], xs[-1] + jump)
        assert v is not None
        scores.append(v.score)
    assert scores == sorted(scores)
    assert scores[0] < 0.1 and scores[-1] > 0.5


def test_state_round_trips_through_bytes_and_continues_identically() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 6, seed=15)
    xs[24 * 7 * 5 + 3] += 500.0
    for cut in (5, 24 * 2 + 7, 24 * 7 * 3 + 1, 24 * 7 * 5):
        a = SeasonalDetector()
        a.update_many(ts[:cut], xs[:cut])
        b = SeasonalDetector.from_bytes(a.to_bytes())
        assert b.to_bytes() == a.to_bytes()
        assert a.update_many(ts[cut:], xs[cut:]) == b.update_many(ts[cut:], xs[cut:])
        assert a.to_bytes() == b.to_bytes()
    restored = registry.restore(a.to_bytes())
    assert isinstance(restored, SeasonalDetector)


def test_state_is_small_and_never_pickled() -> None:
    ts, xs = hourly_daily_weekly(24 * 7 * 10, seed=16)
    d = SeasonalDetector()
    sizes = []
    for t, x in zip(ts, xs, strict=True):
        d.update(t, x)
        if int(t / HOUR) % 50 == 0:
            sizes.append(len(d.to_bytes()))
    assert max(sizes) <= 32 * 1024
    assert b"pickle" not in d.to_bytes()
    with pytest.raises(StateError):
        SeasonalDetector.from_bytes(b"\x93\x01\xa6pickle")


def test_params_are_validated() -> None:
    with pytest.raises(DetectorConfigError):
        registry.make("seasonal", {"sensitivity": 2.0})
    with pytest.raises(DetectorConfigError):
        registry.make("seasonal", {"period": "1y"})
    with pytest.raises(DetectorConfigError):
        registry.make("seasonal", {"nope": 1})
    d = registry.make("seasonal", {"sensitivity": 0.8, "period": "1d+1w"})
    assert isinstance(d, SeasonalDetector)
    assert msgspec.structs.asdict(d.params)["period"] == "1d+1w"
    assert SeasonalParams(sensitivity=0.5).threshold == 0.5


@pytest.mark.parametrize("seed", [1, 2])
def test_daily_job_that_drifts_by_minutes_becomes_routine(seed: int) -> None:
    # 5-minute metric with a daily job: a spike at 03:00 give or take a quarter hour
    rng = np.random.default_rng(seed)
    step, per_day, days = 300.0, 288, 14
    ts = [i * step for i in range(per_day * days)]
    xs = [10.0 + float(v) for v in rng.normal(0.0, 1.0, len(ts))]
    jobs = [d * per_day + 36 + int(rng.integers(-3, 4)) for d in range(days)]
    for at in jobs:
        xs[at] += 30.0
    odd = 10 * per_day + 180  # the same spike at 15:00 is news
    xs[odd] += 30.0
    d = SeasonalDetector()
    verdicts = d.update_many(ts, xs)
    flags = flagged(verdicts)
    assert jobs[0] in flags and odd in flags  # the first job was news, and so is 15:00
    assert not set(jobs[3:]) & set(flags)  # from the third day on the job is routine
    scores = [v.score for v in (verdicts[at] for at in jobs[3:]) if v is not None]
    assert len(scores) == len(jobs) - 3 and float(np.mean(scores)) < 0.2


def test_a_huge_spike_does_not_hide_a_later_level_shift() -> None:
    rng = np.random.default_rng(1)
    xs: list[float | None] = [10 + float(rng.normal(0, 0.5)) for _ in range(200)]
    xs[120] = 30.0  # 40 sigma: the learned tails grow heavy
    for i in range(150, 200):
        xs[i] = 25 + float(rng.normal(0, 0.5))
    ts = [i * 3600.0 for i in range(200)]
    verdicts = SeasonalDetector().update_many(ts, xs)
    shifts = [v for v in verdicts if v is not None and v.kind == "level_shift"]
    assert [v.changepoint_at for v in shifts] == [ts[150]]
    assert shifts[0].anomalous and shifts[0].score >= 0.5
    assert not any(v is not None and v.anomalous for v in verdicts[160:])


def test_spikes_of_one_size_on_a_flat_baseline_become_routine() -> None:
    """A noisy sensor goes quiet: the scale of the flat reading shrinks without end, so
    the same spike is ever more robust sigmas away. Its tail is learned in the data's
    units: once a few have come they are routine, while one ten times larger is news."""
    rng = np.random.default_rng(5)
    xs = [5.0 + float(v) for v in rng.normal(0.0, 1.0, 300)] + [5.0] * 2700
    spikes = list(range(400, 2900, 100))
    for at in spikes:
        xs[at] = 25.0
    big = 2950
    xs[big] = 205.0
    ts = [i * 3600.0 for i in range(len(xs))]
    for verdicts in (
        SeasonalDetector().update_many(ts, xs),
        [d.update(t, x) for d in [SeasonalDetector()] for t, x in zip(ts, xs, strict=True)],
    ):
        flags = flagged(verdicts)
        assert spikes[0] in flags and big in flags
        assert not set(spikes[5:]) & set(flags)
        late = [v.score for v in (verdicts[at] for at in spikes[5:]) if v is not None]
        assert len(late) == len(spikes) - 5 and max(late) < 0.35 and late[-1] < late[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_reading_flat_while_warming_up_then_noisy_settles(seed: int) -> None:
    """Warm-up on a flat reading leaves a scale at its floor, and points beyond the
    clip teach it nothing: the first points of the noise are news, then the scale
    restarts from them and ordinary noise is quiet (on both paths, with one state)."""
    rng = np.random.default_rng(seed)
    xs = [5.0] * 50 + [5.0 + float(v) for v in rng.normal(0.0, 1.0, 1500)]
    ts = [i * 3600.0 for i in range(len(xs))]
    batched = SeasonalDetector()
    one_by_one = SeasonalDetector()
    for verdicts in (
        batched.update_many(ts, xs),
        [one_by_one.update(t, x) for t, x in zip(ts, xs, strict=True)],
    ):
        flags = flagged(verdicts)
        assert flags and flags[0] == 50
        assert not [i for i in flags if i >= 100]
    assert batched.to_bytes() == one_by_one.to_bytes()
    assert 0.5 < batched.state.scale < 2.0


@pytest.mark.parametrize("seed", [0, 1, 4])
def test_the_tail_prior_follows_the_scale(seed: int) -> None:
    """Noise that grows fiftyfold after a quiet warm-up, slowly enough for the scale to
    follow: the point tails' prior is in robust sigmas, so until exceedances have taught
    their size in the data's units the points are judged against the scale of now, not
    of the warm-up."""
    rng = np.random.default_rng(seed)
    n = 2000
    sd = np.minimum(1.0, 0.02 * np.exp(np.arange(n) / 60.0))
    xs = (100.0 + rng.normal(0.0, 1.0, n) * sd).tolist()
    ts = [i * 3600.0 for i in range(n)]
    assert flagged(SeasonalDetector().update_many(ts, xs)) == []


@pytest.mark.parametrize(("step", "warmup", "want"), [(DAY, 40, "1w"), (HOUR, 100, "1d+1w")])
def test_a_season_found_while_still_warming_up(step: float, warmup: int, want: str) -> None:
    """A warm-up longer than three cycles: the season is installed before the level
    and scale are first set, and the detector goes on to find it (on both paths)."""
    ts = [i * step for i in range(24 * 7 * 4 if step == HOUR else 200)]
    xs = [
        10.0 + 3.0 * math.sin(2 * math.pi * t / DAY) + 2.0 * (t // DAY % 7 >= 5) + 0.1 * (i % 3)
        for i, t in enumerate(ts)
    ]
    params = SeasonalParams(warmup=warmup)
    one_by_one = SeasonalDetector(params)
    verdicts = [one_by_one.update(t, x) for t, x in zip(ts, xs, strict=True)]
    batched = SeasonalDetector(params)
    assert batched.update_many(ts, xs) == verdicts
    assert one_by_one.periods == batched.periods == want
    assert one_by_one.to_bytes() == batched.to_bytes()
