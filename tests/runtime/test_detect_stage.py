"""The Kafka detect stage without Kafka: snapshots never split a message."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lupus_stream.contracts import MetricPoint
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.freshness import FreshnessDetector
from lupus_stream.detection.threshold import ThresholdDetector
from lupus_stream.engine import Engine
from lupus_stream.monitors import Catalog, load_catalog
from lupus_stream.runtimes.kafka.detect import DetectStage, InputMessage, PartitionSnapshot

TOPIC = "lupus.metrics"


def catalog(tmp_path: Path, signal: str = "{kind: metric, name: orders}") -> Catalog:
    (tmp_path / "shop.yaml").write_text(
        textwrap.dedent(
            f"""\
            product: shop
            owner: team
            receiver: oncall
            monitors:
              - name: orders
                signal: {signal}
                detector: {{kind: threshold, upper: 100}}
            """
        )
    )
    return load_catalog(tmp_path)


def message(offset: int, hours: list[int], value: float) -> InputMessage:
    records = [
        {
            "type": "metric",
            "product": "shop",
            "name": "orders",
            "ts": f"2026-03-02T{h:02d}:00:00Z",
            "value": value,
        }
        for h in hours
    ]
    return InputMessage(TOPIC, 0, offset, b"shop/orders", json.dumps(records).encode())


class Snapshots:
    def __init__(self) -> None:
        self.data: dict[int, bytes] = {}
        self.aside: dict[str, bytes] = {}

    async def get(self, partition: int) -> bytes | None:
        return self.data.get(partition)

    async def put(self, partition: int, data: bytes) -> None:
        self.data[partition] = data

    async def set_aside(self, partition: int, data: bytes) -> str:
        key = f"aside:{partition}:{len(self.aside)}"
        self.aside[key] = data
        return key


class SlowOutput:
    """Anomaly sends wait until `release` is set, like a producer with a full buffer."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.sending = asyncio.Event()
        self.anomalies: list[bytes] = []

    async def anomaly(self, key: str, value: bytes) -> None:
        self.sending.set()
        await self.release.wait()
        self.anomalies.append(value)

    async def deadletter(self, key: bytes | None, value: bytes) -> None:
        raise AssertionError(f"unexpected dead letter: {value!r}")

    async def flush(self) -> None:
        return None


def test_snapshot_waits_for_the_message_in_flight(tmp_path: Path) -> None:
    acked: list[Any] = []

    async def scenario() -> tuple[Snapshots, list[str]]:
        snapshots, output = Snapshots(), SlowOutput()
        stage = DetectStage(catalog(tmp_path), snapshots, output, {TOPIC: "metric"}, acked.append)
        output.release.set()
        await stage.handle(message(0, [0], 10.0), "h0")  # normal: nothing to send
        output.release.clear()
        busy = asyncio.create_task(stage.handle(message(1, [1, 2, 3], 500.0), "h1"))
        await output.sending.wait()  # the first of three anomalies is being sent
        order: list[str] = []
        snap = asyncio.create_task(stage.snapshot(0))
        await asyncio.sleep(0.05)
        order.append("snapshot done" if snap.done() else "snapshot waiting")
        output.release.set()
        await busy
        await snap
        return snapshots, order

    snapshots, order = asyncio.run(scenario())
    assert order == ["snapshot waiting"]
    assert acked == ["h0", "h1"]
    snap = msgspec.msgpack.decode(snapshots.data[0], type=PartitionSnapshot)
    assert snap.offsets == {TOPIC: 1}
    engine = Engine(catalog(tmp_path))
    engine.restore(snap.engine)
    # The engine in the snapshot has seen all of message 1, as its offset says.
    assert engine.watermark == datetime(2026, 3, 2, 3, tzinfo=UTC).timestamp()


def test_restored_stage_skips_what_the_snapshot_covers(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, list[bytes]]:
        snapshots = Snapshots()
        first = SlowOutput()
        first.release.set()
        stage = DetectStage(catalog(tmp_path), snapshots, first, {TOPIC: "metric"}, lambda h: None)
        await stage.handle(message(0, [0, 1], 500.0), "h0")
        await stage.release({0})
        second = SlowOutput()
        second.release.set()
        restored = DetectStage(
            catalog(tmp_path), snapshots, second, {TOPIC: "metric"}, lambda h: None
        )
        await restored.handle(message(0, [0, 1], 500.0), "h0")  # redelivered
        await restored.handle(message(1, [2], 500.0), "h1")
        return restored.counts.skipped, second.anomalies

    skipped, anomalies = asyncio.run(scenario())
    assert skipped == 1
    assert len(anomalies) == 1  # only the new message's point


class Recorded:
    """Everything the stage sends, at once."""

    def __init__(self) -> None:
        self.anomalies: list[bytes] = []
        self.deadletters: list[tuple[bytes | None, dict[str, Any]]] = []

    async def anomaly(self, key: str, value: bytes) -> None:
        self.anomalies.append(value)

    async def deadletter(self, key: bytes | None, value: bytes) -> None:
        self.deadletters.append((key, json.loads(value)))

    async def flush(self) -> None:
        return None


def handled(tmp_path: Path, message: InputMessage, cat: Catalog | None = None) -> Recorded:
    """What a fresh stage sends for one message."""

    async def scenario() -> Recorded:
        output = Recorded()
        monitors = catalog(tmp_path) if cat is None else cat
        stage = DetectStage(monitors, Snapshots(), output, {TOPIC: "metric"}, print)
        await stage.handle(message, "h")
        return output

    return asyncio.run(scenario())


def test_a_record_whose_detector_fails_is_kept_with_its_place_in_the_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = ThresholdDetector.update

    def fail_on_13(self: ThresholdDetector, t: float, x: Any) -> Verdict | None:
        if x == 13.0:
            raise RuntimeError("cannot judge 13")
        return original(self, t, x)

    monkeypatch.setattr(ThresholdDetector, "update", fail_on_13)
    records = [json.loads(message(0, [h], v).value)[0] for h, v in ((0, 5.0), (1, 7.0))]
    records.insert(1, {**records[0], "value": "bad"})
    records.append({**records[0], "ts": "2026-03-02T02:00:00Z", "value": 13.0})
    output = handled(
        tmp_path, InputMessage(TOPIC, 0, 7, b"shop/orders", json.dumps(records).encode())
    )
    (_, rejected), (key, failed) = output.deadletters
    assert (rejected["record_index"], rejected["field"]) == (1, "value")
    assert key == TOPIC.encode() and failed["source"] == f"{TOPIC}[0]@7"
    assert failed["record_index"] == 3 and "cannot judge 13" in failed["reason"]
    assert (
        failed["rule"] == "detector failure"
        and rejected["rule"] == "Expected `float | null`, got `str`"
    )
    kept = msgspec.json.decode(msgspec.convert(failed["raw"], bytes), type=MetricPoint)
    assert kept.value == 13.0 and kept.ts.hour == 2


def test_a_label_set_beyond_max_series_is_kept_with_its_rule(tmp_path: Path) -> None:
    records = [
        {**json.loads(message(0, [h], 500.0).value)[0], "labels": {"region": region}}
        for h, region in ((0, "eu"), (1, "us"), (2, "eu"))
    ]
    cat = catalog(tmp_path, "{kind: metric, name: orders, max_series: 1}")
    data = json.dumps(records).encode()
    output = handled(tmp_path, InputMessage(TOPIC, 0, 3, b"shop/orders", data), cat)
    [(_, refused)] = output.deadletters
    assert refused["rule"] == "series limit" and refused["record_index"] == 1
    assert "region=us" in refused["reason"] and "max_series is 1" in refused["reason"]
    kept = msgspec.json.decode(msgspec.convert(refused["raw"], bytes), type=MetricPoint)
    assert kept.labels == {"region": "us"}
    assert len(output.anomalies) == 2  # both points of the tracked series


def test_a_check_that_fails_at_a_tick_is_a_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "src.yaml").write_text(
        "product: data\nowner: team\nreceiver: oncall\nmonitors:\n"
        "  - name: clicks_landed\n"
        '    signal: {kind: source, source: clicks, expected_by: "06:00"}\n'
    )

    def broken(self: FreshnessDetector, now: float) -> Verdict | None:
        raise ValueError("no clock today")

    monkeypatch.setattr(FreshnessDetector, "check", broken)

    async def scenario() -> Recorded:
        output = Recorded()
        stage = DetectStage(catalog(tmp_path), Snapshots(), output, {TOPIC: "metric"}, print)
        await stage.partition(2)
        await stage.tick(1_772_438_400.0)  # 2026-03-02T08:00:00Z
        return output

    [(key, failed)] = asyncio.run(scenario()).deadletters
    assert key == b"tick"
    assert failed["source"] == "tick of partition 2 at 2026-03-02T08:00:00+00:00"
    assert "clicks_landed" in failed["reason"] and "no clock today" in failed["reason"]


def test_an_unreadable_snapshot_is_kept_and_the_partition_starts_afresh(tmp_path: Path) -> None:
    other_format = msgspec.msgpack.encode(PartitionSnapshot(99, {TOPIC: 3}, b""))

    async def scenario() -> tuple[Recorded, DetectStage, Snapshots]:
        snapshots, output = Snapshots(), Recorded()
        snapshots.data[0] = b"\x93 not a snapshot"
        snapshots.data[1] = other_format
        stage = DetectStage(catalog(tmp_path), snapshots, output, {TOPIC: "metric"}, print)
        await stage.handle(message(5, [0, 1], 500.0), "h")
        await stage.partition(1)
        return output, stage, snapshots

    output, stage, snapshots = asyncio.run(scenario())
    [(key, kept), (_, second)] = output.deadletters
    assert key == b"snapshot" and kept["source"] == "snapshot of partition 0"
    assert kept["reason"].startswith("unreadable, the partition starts afresh (16 bytes kept")
    assert kept["rule"] == "unreadable snapshot" and "format 99, not 1" in second["reason"]
    assert snapshots.aside == {"aside:0:0": b"\x93 not a snapshot", "aside:1:1": other_format}
    assert stage.counts.records == 2 and len(output.anomalies) == 2  # and it goes on
    assert stage.partitions[1].offsets == {}  # not the offsets of a snapshot it cannot read


def test_a_record_from_the_future_is_refused_and_its_series_goes_on(tmp_path: Path) -> None:
    """A worker runs on wall-clock time: a point a year ahead would otherwise make every
    later point of its series a late one."""
    now = datetime.now(UTC)
    records = [
        {"type": "metric", "product": "shop", "name": "orders", "ts": t.isoformat(), "value": v}
        for t, v in ((now + timedelta(days=365), 5.0), (now, 500.0))
    ]
    output = handled(
        tmp_path, InputMessage(TOPIC, 0, 0, b"shop/orders", json.dumps(records).encode())
    )
    [(_, refused)] = output.deadletters
    assert (refused["record_index"], refused["field"]) == (0, "ts")
    assert refused["rule"] == (
        "Expected a time at most 24 h ahead of the receiver's clock (see received_at)"
    )
    assert len(output.anomalies) == 1  # the point of now is judged, not taken as late
