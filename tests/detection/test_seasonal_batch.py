"""The seasonal detector's batch path (compiled steady-state update) against `update`.

`update` is the reference; `update_many` / `update_batches` must give the same verdicts
and leave the same state, bit for bit, on every kind of series and chunking.
"""

from __future__ import annotations

import math
import random

import msgspec
import numpy as np
import pytest

from lupus_stream.detection.base import VerdictBatch
from lupus_stream.detection.seasonal import SeasonalDetector, SeasonalParams


def messy_series(
    seed: int, n: int, step: float, *, weekly: bool = True
) -> tuple[list[float], list[float | None]]:
    """Daily (and weekly) cycle, noise, spikes, a level shift, gaps, jitter, late and
    duplicate points, missing values."""
    rng = random.Random(seed)
    level = rng.uniform(10, 1000)
    ts: list[float] = []
    xs: list[float | None] = []
    t = 1.7e9
    for i in range(n):
        r = rng.random()
        if r < 0.01:
            t -= step  # late
        elif r < 0.02:
            pass  # duplicate time
        elif r < 0.03:
            t += step * rng.randint(2, 30)  # gap
        else:
            t += step * rng.uniform(0.9, 1.1)
        value = level * (1 + 0.3 * math.sin(2 * math.pi * t / 86400))
        if weekly:
            value *= 1 + 0.1 * math.sin(2 * math.pi * t / 604800)
        value += rng.gauss(0, level * 0.03)
        if rng.random() < 0.01:
            value *= rng.choice([0.1, 3.0, 10.0])
        if i > n * 0.6:
            value += level * 0.5
        ts.append(t)
        xs.append(rng.choice([None, math.nan]) if rng.random() < 0.01 else value)
    return ts, xs


def per_point(detector: SeasonalDetector, ts: list[float], xs: list[float | None]) -> list:
    return [detector.update(t, x) for t, x in zip(ts, xs, strict=True)]


def chunked(detector: SeasonalDetector, ts: list[float], xs: list[float | None], seed: int) -> list:
    rng = random.Random(seed)
    out: list = []
    i = 0
    while i < len(ts):
        k = rng.randint(1, 80)
        out += detector.update_many(ts[i : i + k], xs[i : i + k])
        i += k
    return out


def state_bytes(detector: SeasonalDetector) -> bytes:
    return msgspec.msgpack.encode(detector.state)


@pytest.mark.parametrize("seed", range(12))
def test_batches_equal_point_by_point(seed: int) -> None:
    step = (60.0, 300.0, 900.0, 3600.0, 86400.0, 7200.0)[seed % 6]
    n = 400 if step == 86400.0 else 2500
    ts, xs = messy_series(seed, n, step, weekly=seed % 2 == 0)
    reference, batched = SeasonalDetector(), SeasonalDetector()
    want = per_point(reference, ts, xs)
    got = chunked(batched, ts, xs, seed)
    assert got == want
    assert state_bytes(batched) == state_bytes(reference)
    assert sum(v is not None and v.anomalous for v in want) > 0  # the series has incidents


@pytest.mark.parametrize("period", ["none", "1d", "1w", "1d+1w"])
def test_batches_equal_point_by_point_with_a_fixed_period(period: str) -> None:
    ts, xs = messy_series(7, 2500, 3600.0)
    params = SeasonalParams(period=period, sensitivity=0.7)
    reference, batched = SeasonalDetector(params), SeasonalDetector(params)
    assert chunked(batched, ts, xs, 7) == per_point(reference, ts, xs)
    assert state_bytes(batched) == state_bytes(reference)


@pytest.mark.parametrize("seed", range(4))
def test_batches_equal_point_by_point_on_counts(seed: int) -> None:
    """Small counts, mostly zero, with bursts: long runs of equal values."""
    ts, _ = messy_series(seed, 2500, 3600.0)
    rng = random.Random(seed)
    xs: list[float | None] = [
        float((rng.random() < 0.03) + (15 if rng.random() < 0.005 else 0)) for _ in ts
    ]
    reference, batched = SeasonalDetector(), SeasonalDetector()
    want = per_point(reference, ts, xs)
    assert chunked(batched, ts, xs, seed) == want
    assert state_bytes(batched) == state_bytes(reference)
    assert sum(v is not None and v.anomalous for v in want) > 0


def test_snapshots_between_batches_restore_to_the_same_run() -> None:
    ts, xs = messy_series(3, 3000, 300.0)
    reference = SeasonalDetector()
    want = per_point(reference, ts, xs)
    got: list = []
    detector = SeasonalDetector()
    for i in range(0, len(ts), 250):
        got += detector.update_many(ts[i : i + 250], xs[i : i + 250])
        detector = SeasonalDetector.from_bytes(detector.to_bytes())
    assert got == want
    assert detector.to_bytes() == reference.to_bytes()


def test_flags_say_what_each_verdict_is_without_building_it() -> None:
    ts, xs = messy_series(5, 2000, 3600.0)
    batch = SeasonalDetector().update_batch(ts, xs)
    verdicts = batch.verdicts()
    assert len(batch) == len(ts)
    for flag, verdict in zip(batch.flags, verdicts, strict=True):
        if verdict is None:
            assert flag == VerdictBatch.NO_VERDICT
        else:
            assert flag == (VerdictBatch.ANOMALOUS if verdict.anomalous else VerdictBatch.NORMAL)
    assert VerdictBatch.ANOMALOUS in batch.flags


def test_a_failing_batch_leaves_every_state_as_it_was() -> None:
    ts, xs = messy_series(1, 1500, 3600.0)
    detectors = [SeasonalDetector(), SeasonalDetector()]
    for d in detectors:
        d.update_many(ts[:1000], xs[:1000])
    before = [d.to_bytes() for d in detectors]
    good = (ts[1000:1200], xs[1000:1200])
    bad = (ts[1000:1200], [*xs[1000:1100], "not a number", *xs[1101:1200]])
    with pytest.raises(ValueError):
        SeasonalDetector.update_batches(detectors, [good[0], bad[0]], [good[1], bad[1]])
    assert [d.to_bytes() for d in detectors] == before
    # and the same batch without the bad value then goes through as if nothing happened
    reference = SeasonalDetector.from_bytes(before[0])
    assert detectors[0].update_many(*good) == per_point(reference, *good)


def test_update_batches_refuses_a_detector_twice() -> None:
    d = SeasonalDetector()
    with pytest.raises(ValueError, match="twice"):
        SeasonalDetector.update_batches([d, d], [[1.0], [2.0]], [[1.0], [1.0]])


def test_values_beyond_float32_do_not_break_the_period_history() -> None:
    ts = [i * 3600.0 for i in range(200)]
    xs: list[float | None] = [100.0 + 10 * math.sin(2 * math.pi * i / 24) for i in range(200)]
    xs[40] = 1e300
    reference, batched = SeasonalDetector(), SeasonalDetector()
    want = per_point(reference, ts, xs)
    assert want[40] is not None and want[40].anomalous
    assert batched.update_many(ts, xs) == want
    assert state_bytes(batched) == state_bytes(reference)


def test_numpy_timestamps_leave_plain_floats_in_the_state() -> None:
    d = SeasonalDetector()
    for i in range(100):
        d.update(np.float64(i * 3600.0), 100.0 + i % 7)
    SeasonalDetector.from_bytes(d.to_bytes())  # encodes and decodes
    assert type(d.state.t_last) is float


def test_many_series_in_one_call_equal_point_by_point() -> None:
    """Series with different sampling (profiles and envelopes of different sizes), fed
    together in rounds of random length, as the engine feeds a message's series."""
    steps = (300.0, 3600.0, 900.0, 60.0, 3600.0, 86400.0)
    data = [messy_series(20 + k, 3000, step, weekly=k % 2 == 1) for k, step in enumerate(steps)]
    references = [SeasonalDetector() for _ in steps]
    want = [per_point(d, ts, xs) for d, (ts, xs) in zip(references, data, strict=True)]
    detectors = [SeasonalDetector() for _ in steps]
    got: list[list] = [[] for _ in steps]
    rng = random.Random(4)
    cursor = [0] * len(steps)
    while any(c < len(ts) for c, (ts, _) in zip(cursor, data, strict=True)):
        chunks = []
        for k, (ts, xs) in enumerate(data):
            size = rng.randint(0, 40)
            chunks.append((ts[cursor[k] : cursor[k] + size], xs[cursor[k] : cursor[k] + size]))
            cursor[k] += size
        batches = SeasonalDetector.update_batches(
            detectors, [c[0] for c in chunks], [c[1] for c in chunks]
        )
        for k, batch in enumerate(batches):
            got[k] += batch.verdicts()
    for k in range(len(steps)):
        assert got[k] == want[k], f"series {k}"
        assert state_bytes(detectors[k]) == state_bytes(references[k]), f"series {k}"


def test_a_failure_after_the_compiled_run_leaves_every_state_as_it_was() -> None:
    ts, xs = messy_series(2, 1400, 3600.0)
    detectors = [SeasonalDetector(), SeasonalDetector(), SeasonalDetector()]
    for d in detectors:
        d.update_many(ts[:1200], xs[:1200])
    before = [d.to_bytes() for d in detectors]
    late = [ts[1200] - 7200.0, *ts[1201:1300]]  # the reference takes the late first point

    def broken(t: float, x: object) -> None:
        raise RuntimeError("reference path failed")

    detectors[2].update = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        SeasonalDetector.update_batches(
            detectors, [ts[1200:1300], ts[1200:1300], late], [xs[1200:1300]] * 3
        )
    assert [d.to_bytes() for d in detectors] == before


@pytest.mark.parametrize("extreme", [-1.7976931348623157e308, 1.7976931348623157e308])
def test_a_value_so_far_out_that_z_overflows_scores_one_on_both_paths(extreme: float) -> None:
    rng = random.Random(2)
    ts = [i * 3600.0 for i in range(402)]
    xs: list[float | None] = [100 + rng.gauss(0, 0.1) for _ in ts]
    xs[400] = extreme
    reference, batched = SeasonalDetector(), SeasonalDetector()
    want = per_point(reference, ts, xs)
    assert chunked(batched, ts, xs, 2) == want
    assert state_bytes(batched) == state_bytes(reference)
    spike, after = want[400], want[401]
    assert spike is not None and spike.anomalous and spike.score == 1.0
    assert after is not None and not after.anomalous and math.isfinite(after.score)


def test_the_compiled_path_has_the_constants_of_the_reference() -> None:
    """The compiled module repeats the reference's constants (numba compiles them in);
    every name both define has one value."""
    from lupus_stream.detection import seasonal, seasonal_steady

    shared = [n for n in dir(seasonal_steady) if n.isupper() and hasattr(seasonal, n)]
    assert {"TAIL_START", "TAIL_PRIOR_EXCESS", "SURPRISE_CLIP", "LOG10_COMPONENTS"} <= set(shared)
    assert {n: getattr(seasonal_steady, n) for n in shared} == {
        n: getattr(seasonal, n) for n in shared
    }


def random_case(seed: int) -> tuple[SeasonalParams, list[float], list[float | None]]:
    """Parameters and a series drawn at random: sampling from a minute to a day, flat,
    noisy, stepping, spiky, mostly-zero, huge (beyond float32) or tiny values, with
    gaps, late points and missing values."""
    rng = random.Random(seed)
    step = rng.choice([60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0])
    params = SeasonalParams(
        warmup=rng.choice([3, 12, 40, 200]),
        period=rng.choice(["auto", "auto", "none", "1d", "1w", "1d+1w"]),
        shift_after=rng.choice([1, 2, 3, 6]),
        refractory=rng.choice([0, 5, 36]),
        sensitivity=rng.random(),
    )
    kind = rng.choice(["flat", "noise", "steps", "spikes", "zeros", "huge", "tiny", "mixed"])
    level = rng.choice([0.0, 1.0, 1e-8, 1e6, 1e90, -5.0])
    period = rng.randint(5, 200)
    t = 1.6e9
    ts: list[float] = []
    xs: list[float | None] = []
    for i in range(rng.randint(5, 3000)):
        r = rng.random()
        t += step * (rng.choice([0.5, 3.0, 50.0]) if r < 0.05 else 1.0)
        if r < 0.01:
            t -= 2 * step  # late
        x: float | None
        if kind == "flat":
            x = level
        elif kind == "noise":
            x = level + rng.gauss(0, abs(level) * 0.1 + 1)
        elif kind == "steps":
            x = level + (i // period) % 2 * 10.0
        elif kind == "spikes":
            x = level + (rng.choice([100.0, -100.0, 1e9]) if rng.random() < 0.05 else 0.0)
        elif kind == "zeros":
            x = 0.0 if rng.random() < 0.9 else rng.choice([1.0, 5.0])
        elif kind == "huge":
            x = rng.uniform(-1e99, 1e99)
        elif kind == "tiny":
            x = rng.gauss(0, 1e-300)
        else:
            x = rng.choice([level, level + 1, rng.gauss(level, 1), None, math.nan])
        ts.append(t)
        xs.append(x)
    return params, ts, xs


@pytest.mark.parametrize("seed", range(0, 200, 5))
def test_random_series_and_parameters_agree_on_both_paths(seed: int) -> None:
    """Whatever the data and parameters: no failure, the same verdicts and state on both
    paths, scores in [0, 1], and a finite expected value for every finite point."""
    params, ts, xs = random_case(seed)
    reference = SeasonalDetector(params)
    verdicts = per_point(reference, ts, xs)
    batched = SeasonalDetector(params)
    assert repr(chunked(batched, ts, xs, seed)) == repr(verdicts)  # NaN-safe equality
    assert batched.to_bytes() == reference.to_bytes()
    for v in verdicts:
        if v is not None:
            assert 0.0 <= v.score <= 1.0
            assert v.expected is None or math.isfinite(v.expected)


def test_series_updated_together_keep_state_of_their_own() -> None:
    """One compiled call updates many series; each must keep a vector of its own, or a
    series that goes quiet would keep the whole call's state of every series alive."""
    ts = [h * 3600.0 for h in range(24 * 30)]
    detectors = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        xs = [
            100.0 + 20.0 * math.sin(2 * math.pi * h / 24) + float(rng.normal())
            for h in range(len(ts))
        ]
        detector = SeasonalDetector()
        detector.update_many(ts, xs)
        detectors.append(detector)
    assert all(d.periods == "1d" for d in detectors)
    t = ts[-1] + 3600.0
    SeasonalDetector.update_batches(detectors, [[t]] * 3, [[100.0]] * 3)
    works = [d._work for d in detectors]
    assert all(w is not None and w.flags.owndata for w in works)


def test_the_struct_drops_what_the_vector_holds_and_gets_it_back() -> None:
    """On the compiled path the state vector holds profiles and envelope; the struct
    does not keep a second copy of them (most of a series' memory), and reading
    `state` brings them back equal to the reference's."""
    step = 300.0
    ts = [i * step for i in range(288 * 5)]
    rng = np.random.default_rng(2)
    xs = [100.0 + 20.0 * math.sin(2 * math.pi * t / 86400) + float(rng.normal()) for t in ts]
    batched = SeasonalDetector()
    batched.update_many(ts, xs)
    assert batched._work is not None
    assert batched._state.env_up == [] and batched._state.daily == []
    reference = SeasonalDetector()
    per_point(reference, ts, xs)
    assert len(batched.state.env_up) == len(reference.state.env_up) == 288
    assert batched.state.daily == reference.state.daily
    assert batched.to_bytes() == reference.to_bytes()
