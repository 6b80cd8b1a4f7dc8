"""The Kafka detect stage without Kafka: snapshots never split a message."""

from __future__ import annotations

import asyncio
import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from lupus_stream.engine import Engine
from lupus_stream.monitors import Catalog, load_catalog
from lupus_stream.runtimes.kafka.detect import DetectStage, InputMessage, PartitionSnapshot

TOPIC = "lupus.metrics"


def catalog(tmp_path: Path) -> Catalog:
    (tmp_path / "shop.yaml").write_text(
        textwrap.dedent(
            """\
            product: shop
            owner: team
            receiver: oncall
            monitors:
              - name: orders
                signal: {kind: metric, name: orders}
                detector: {kind: threshold, upper: 100}
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

    async def get(self, partition: int) -> bytes | None:
        return self.data.get(partition)

    async def put(self, partition: int, data: bytes) -> None:
        self.data[partition] = data


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
