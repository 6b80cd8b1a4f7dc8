"""The batch path (`process_each`, `process_many`) against `process` record by record.

Whatever the batching, the outcomes (anomalies with their ids, errors, their order) and the
state (`snapshot()` bytes) must be those of feeding the same records one at a time.
"""

from __future__ import annotations

import math
import random
import textwrap
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lupus_stream.contracts import InputRecord, MetricPoint
from lupus_stream.detection import registry
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.robust import RobustBaselineDetector
from lupus_stream.engine import Engine, Outcome
from lupus_stream.engine import engine as engine_module
from lupus_stream.monitors import Catalog, load_catalog
from tests.engine.test_engine import EVERYTHING, mixed_stream

T0 = datetime(2024, 5, 1, tzinfo=UTC)

MONITORS = """
- name: latency_default
  signal: {kind: metric, name: latency}
- name: latency_small
  signal: {kind: metric, name: latency, labels: {region: "=~eu.*"}}
  detector: {kind: robust, window: 5, min_history: 3, shift_after: 2}
- name: latency_cap
  signal: {kind: metric, name: latency, labels: {region: "!=us"}}
  detector: {kind: threshold, upper: 130}
- name: latency_even
  signal: {kind: metric, name: latency, labels: {region: "!~ap"}}
  detector: {kind: robust, window: 8, min_history: 4, threshold: 3.0, shift_after: 4}
- name: latency_few
  signal: {kind: metric, name: latency, max_series: 2}
  detector: {kind: robust, window: 5, min_history: 3, shift_after: 2}
- name: orders
  signal: {kind: metric, name: orders, absent_after: 3h}
  detector: {kind: robust, window: 6, min_history: 3, threshold: 3.5, shift_after: 2}
"""


def make_catalog(tmp_path: Path, monitors: str = MONITORS) -> Catalog:
    directory = tmp_path / "detectors"
    directory.mkdir(parents=True, exist_ok=True)
    body = "product: shop\nowner: team\nreceiver: oncall\nmonitors:\n"
    body += textwrap.indent(textwrap.dedent(monitors).strip() + "\n", "  ")
    (directory / "shop.yaml").write_text(body, encoding="utf-8")
    return load_catalog(directory)


LABEL_SETS: list[dict[str, str]] = [
    {"region": "eu", "host": "a"},
    {"host": "a", "region": "eu"},  # the same series, labels in another order
    {"region": "eu-west", "host": "b"},
    {"region": "us", "host": "a"},
    {"region": "ap"},
    {},
    {"region": "eu", "host": "a,region=eu"},  # a value that looks like more labels
]


def value_stream(rng: random.Random, n: int) -> list[float | None]:
    """Noise around a level, with spikes, level shifts, flat stretches and odd values."""
    level = rng.choice([0.0, 5.0, 100.0, 1e5])
    sd = rng.choice([0.0, 0.5, 1.0, 20.0])
    flat = rng.random() < 0.2
    out: list[float | None] = []
    for _ in range(n):
        if rng.random() < 0.02:
            level += rng.choice([-1.0, 1.0]) * rng.uniform(10.0, 60.0) * (sd or 1.0)
        if rng.random() < 0.02:
            flat = not flat
        x: float | None = level if flat else level + rng.gauss(0.0, sd)
        r = rng.random()
        if r < 0.02:
            x = (x or 1.0) * rng.choice([0.1, 3.0, -2.0, 10.0])
        elif r < 0.04:
            x = None
        elif r < 0.045:
            x = math.nan
        elif r < 0.047:
            x = rng.choice([math.inf, -math.inf, -0.0, 0.0])
        elif r < 0.06 and x is not None:
            x = float(round(x))
        out.append(x)
    return out


def random_records(seed: int, hours: int = 150) -> list[MetricPoint]:
    """Interleaved series of two metrics (and one nobody monitors), with duplicate and
    out-of-order times and hours where a series sends nothing."""
    rng = random.Random(seed)
    streams = []
    for name in ("latency", "orders", "unmonitored"):
        for labels in rng.sample(LABEL_SETS, rng.randint(1, len(LABEL_SETS))):
            streams.append((name, labels, value_stream(rng, hours)))
    records: list[MetricPoint] = []
    for hour in range(hours):
        batch = []
        for name, labels, values in streams:
            if rng.random() < 0.05:  # a gap
                continue
            t = float(hour)
            if rng.random() < 0.05:
                t -= rng.choice([0.0, 1.0, 3.0, 0.5])  # duplicate or late
            ts = T0 + timedelta(hours=t)
            batch.append(
                MetricPoint(
                    product="shop", name=name, ts=ts, value=values[hour], labels=dict(labels)
                )
            )
        rng.shuffle(batch)
        records.extend(batch)
    return records


def chunks(records: list[Any], rng: random.Random) -> Iterator[list[Any]]:
    i = 0
    while i < len(records):
        size = rng.choice([1, 2, 7, 40, 250, 1000])
        yield records[i : i + size]
        i += size


def encoded(outcomes: list[tuple[int, Outcome]]) -> bytes:
    """Bit for bit (msgpack keeps NaN, infinities and the sign of zero)."""
    return msgspec.msgpack.encode([(i, o.anomalies, o.errors) for i, o in outcomes])


def one_by_one(engine: Engine, records: list[InputRecord]) -> list[tuple[int, Outcome]]:
    outcomes = [(i, engine.process(record)) for i, record in enumerate(records)]
    return [(i, o) for i, o in outcomes if o.anomalies or o.errors]


def tick_time(records: list[Any], rng: random.Random) -> float:
    last = max((r.ts.timestamp() for r in records if isinstance(r, MetricPoint)), default=0.0)
    return last + rng.choice([0.0, 1.0, 4.0, 30.0]) * 3600.0


@pytest.mark.parametrize("seed", range(12))
def test_batches_equal_record_by_record(tmp_path: Path, seed: int) -> None:
    cat = make_catalog(tmp_path)
    records = random_records(seed)
    single, batched = Engine(cat), Engine(cat)
    rng = random.Random(1000 + seed)
    anomalies = 0
    for chunk in chunks(list(records), rng):
        expected = one_by_one(single, chunk)
        got = batched.process_each(chunk)
        assert encoded(got) == encoded(expected)
        assert batched.snapshot() == single.snapshot()
        assert batched.watermark == single.watermark
        anomalies += sum(len(o.anomalies) for _, o in expected)
        if rng.random() < 0.3:  # absence checks between batches
            now = tick_time(chunk, rng)
            assert encoded([(0, batched.tick(now))]) == encoded([(0, single.tick(now))])
    assert anomalies > 0
    assert list(batched.series) == list(single.series)  # created in the same order


class _Folding(tzinfo):
    """A zone whose wall times are all ambiguous: fold 0 is UTC+2, fold 1 is UTC+1."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=1 if dt is not None and dt.fold else 2)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


def test_batches_with_equal_stamps_that_are_other_instants(tmp_path: Path) -> None:
    """Stamps of one instant in other offsets, and equal stamps that are not one instant
    (a fold: equal wall times in one zone, an hour apart), get the times `process` gives."""
    cat = make_catalog(tmp_path)
    folding, plus2 = _Folding(), timezone(timedelta(hours=2))
    records = []
    for hour in range(60):
        wall = datetime(2024, 5, 1) + timedelta(hours=hour)
        stamps = [
            wall.replace(tzinfo=UTC),
            (wall.replace(tzinfo=UTC) + timedelta(hours=2)).replace(tzinfo=plus2),  # same instant
            wall.replace(tzinfo=folding),
            wall.replace(tzinfo=folding, fold=1),  # equal to the one before, an hour later
        ]
        for k, ts in enumerate(stamps):
            value = 100.0 + hour % 5 + (400.0 if hour == 50 and k == 3 else 0.0)
            labels = {"region": "eu", "host": f"h{k % 2}"}
            records.append(
                MetricPoint(product="shop", name="latency", ts=ts, value=value, labels=labels)
            )
    single, batched = Engine(cat), Engine(cat)
    expected = one_by_one(single, records)
    assert encoded(batched.process_each(records)) == encoded(expected)
    assert batched.snapshot() == single.snapshot()
    assert batched.watermark == single.watermark


def test_random_streams_reach_every_state(tmp_path: Path) -> None:
    """The randomised streams cover what matters: anomalies, shifts, recoveries, absence,
    label sets beyond a monitor's `max_series`."""
    cat = make_catalog(tmp_path)
    engine = Engine(cat)
    kinds, states, rules, absent = set(), set(), set(), False
    rng = random.Random(5)
    for seed in range(12):
        for chunk in chunks(random_records(seed), rng):
            for _, out in engine.process_each(chunk):
                kinds |= {a.kind for a in out.anomalies}
                states |= {a.state for a in out.anomalies}
                rules |= {e.rule for e in out.errors}
            tick = engine.tick(tick_time(chunk, rng))
            absent |= any(a.kind == "missing_data" for a in tick.anomalies)
        engine = Engine(cat)
    assert {"outlier", "level_shift", "threshold"} <= kinds
    assert states == {"anomalous", "recovered"}
    assert rules == {"series limit"}
    assert absent


def test_process_many_is_the_outcomes_in_order(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path)
    records = random_records(3)
    single, batched = Engine(cat), Engine(cat)
    expected = Outcome()
    for record in records:
        one = single.process(record)
        expected.anomalies.extend(one.anomalies)
        expected.errors.extend(one.errors)
    got = batched.process_many(iter(records))  # any iterable
    assert msgspec.msgpack.encode(got.anomalies) == msgspec.msgpack.encode(expected.anomalies)
    assert got.errors == expected.errors
    assert batched.snapshot() == single.snapshot()


def test_every_record_kind_and_ticks(tmp_path: Path) -> None:
    """Predictions, labels, landings and ticks between batches of mixed records."""
    directory = tmp_path / "everything"
    directory.mkdir()
    body = "product: shop\nowner: team\nreceiver: oncall\nmonitors:\n"
    body += textwrap.indent(textwrap.dedent(EVERYTHING).strip() + "\n", "  ")
    (directory / "shop.yaml").write_text(body, encoding="utf-8")
    cat = load_catalog(directory)
    single, batched = Engine(cat), Engine(cat)
    pending: list[InputRecord] = []
    seen = 0

    def flush() -> None:
        nonlocal seen
        expected = one_by_one(single, pending)
        assert encoded(batched.process_each(pending)) == encoded(expected)
        assert batched.snapshot() == single.snapshot()
        seen += sum(len(o.anomalies) for _, o in expected)
        pending.clear()

    for record, now in mixed_stream():
        if record is None:
            flush()
            assert encoded([(0, batched.tick(now))]) == encoded([(0, single.tick(now))])
        else:
            pending.append(record)
    flush()
    assert seen > 0


def test_on_verdict_sees_the_same_verdicts_in_the_same_order(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path)
    records = random_records(4)
    calls: dict[str, list[tuple[str, float, Verdict]]] = {"single": [], "batched": []}

    def keep(into: list[tuple[str, float, Verdict]]) -> Callable[[Any, float, Verdict], None]:
        return lambda series, t, verdict: into.append((series.key, t, verdict))

    single = Engine(cat, on_verdict=keep(calls["single"]))
    batched = Engine(cat, on_verdict=keep(calls["batched"]))
    assert encoded(batched.process_each(records)) == encoded(one_by_one(single, records))
    assert repr(calls["batched"]) == repr(calls["single"])
    assert batched.snapshot() == single.snapshot()


def test_restored_engine_batches_like_the_original(tmp_path: Path) -> None:
    cat = make_catalog(tmp_path)
    records = random_records(6)
    single = Engine(cat)
    one_by_one(single, records[:500])
    restored = Engine(cat)
    assert restored.restore(single.snapshot()) == []
    expected = one_by_one(single, records[500:])
    assert encoded(restored.process_each(records[500:])) == encoded(expected)
    assert restored.snapshot() == single.snapshot()


def test_a_failing_update_is_reported_as_record_by_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detector that raises on some points: the same errors, for the same records, and
    the other series and points go on. (The vectorised path computes what `update` does
    without calling it, so the failure is put where it always calls `update`: on an
    infinite value.)"""
    real = RobustBaselineDetector.update

    def fragile(self: RobustBaselineDetector, t: float, x: Any) -> Verdict | None:
        if x is not None and math.isinf(x):
            raise RuntimeError(f"boom at {t}")
        return real(self, t, x)

    monkeypatch.setattr(RobustBaselineDetector, "update", fragile)
    cat = make_catalog(tmp_path)
    records = [r for seed in (7, 8) for r in random_records(seed)]
    assert any(r.value is not None and math.isinf(r.value) for r in records)
    single, batched = Engine(cat), Engine(cat)
    rng = random.Random(9)
    errors = 0
    for chunk in chunks(records, rng):
        expected = one_by_one(single, chunk)
        assert encoded(batched.process_each(chunk)) == encoded(expected)
        assert batched.snapshot() == single.snapshot()
        errors += sum(len(o.errors) for _, o in expected)
    assert errors > 0


def test_a_batch_path_that_raises_falls_back_to_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("batch path broken")

    cat = make_catalog(tmp_path)
    records = random_records(10)
    single = Engine(cat)
    expected = one_by_one(single, records)
    monkeypatch.setattr(RobustBaselineDetector, "update_batches", classmethod(broken))
    batched = Engine(cat)
    assert encoded(batched.process_each(records)) == encoded(expected)
    assert batched.snapshot() == single.snapshot()
    monkeypatch.setattr(RobustBaselineDetector, "update_batch", broken)
    again = Engine(cat)
    assert encoded(again.process_each(records)) == encoded(expected)
    assert again.snapshot() == single.snapshot()


def test_a_series_that_cannot_be_made_raises_where_process_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = make_catalog(tmp_path)
    records = random_records(11)
    make = registry.make

    def failing_on(n: int) -> Callable[..., Any]:
        calls = [0]

        def made(*args: Any) -> Any:
            calls[0] += 1
            if calls[0] == n:
                raise ValueError("no detector")
            return make(*args)

        return made

    monkeypatch.setattr(engine_module.registry, "make", failing_on(4))
    single = Engine(cat)
    outcomes: list[tuple[int, Outcome]] = []
    with pytest.raises(ValueError, match="no detector"):
        for i, record in enumerate(records):
            outcomes.append((i, single.process(record)))
    monkeypatch.setattr(engine_module.registry, "make", failing_on(4))
    batched = Engine(cat)
    with pytest.raises(ValueError, match="no detector"):
        batched.process_each(records)
    assert batched.snapshot() == single.snapshot()
    assert batched.watermark == single.watermark
