"""The detect stage of the Kafka runtime, free of Faust so it can be tested and timed alone.

One engine per partition number, shared by the four input topics: they have equal
partition counts and are keyed by signal (`product/name`, `product/model`), so the
predictions and labels of one model meet in one engine and one worker owns each series.

Exactly-once detector state over at-least-once Kafka: events are not acknowledged when
processed but when a snapshot that includes them is stored (engine state plus the last
offset applied per topic). Kafka's committed offset therefore never passes the newest
snapshot; after a crash or a partition move the new owner restores the snapshot,
Kafka redelivers from the committed offset, and events at or below the snapshot's
offsets are skipped. Anomalies produced after the snapshot are produced again with the
same deterministic ids, which the alert stage recognises.

One lock serialises message handling, ticks and snapshots. The four input agents and
the snapshot timer are separate tasks of one event loop, and a message's handling
awaits its sends: without the lock a snapshot could capture an engine that has seen
half of a batched message while its offset says none of it, and the restored worker
would apply that half twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from lupus_stream.alerting.fingerprint import alert_labels, fingerprint
from lupus_stream.contracts import Anomaly, DeadLetter, decode_message
from lupus_stream.detection.base import StateError
from lupus_stream.engine import Engine, Outcome
from lupus_stream.monitors import Catalog

SNAPSHOT_FORMAT = 1


class PartitionSnapshot(msgspec.Struct, array_like=True):
    format: int
    offsets: dict[str, int]
    engine: bytes


class SnapshotStore(Protocol):
    async def get(self, partition: int) -> bytes | None: ...

    async def put(self, partition: int, data: bytes) -> None: ...

    async def set_aside(self, partition: int, data: bytes) -> str: ...


class Output(Protocol):
    """Where the stage's results go (Kafka topics in production)."""

    async def anomaly(self, key: str, value: bytes) -> None: ...

    async def deadletter(self, key: bytes | None, value: bytes) -> None: ...

    async def flush(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InputMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass
class PartitionState:
    engine: Engine
    offsets: dict[str, int] = field(default_factory=dict)
    pending: list[Any] = field(default_factory=list)
    last_snapshot: float = field(default_factory=time.monotonic)


@dataclass
class StageCounts:
    records: int = 0
    skipped: int = 0
    deadlettered: int = 0
    anomalies: int = 0
    snapshots: int = 0
    snapshot_bytes: int = 0


_encoder = msgspec.json.Encoder()


class DetectStage:
    """Decode, detect and emit for the partitions this worker owns."""

    def __init__(
        self,
        catalog: Catalog,
        snapshots: SnapshotStore,
        output: Output,
        record_types: dict[str, str],
        ack: Callable[[Any], object],
        snapshot_every: int = 1000,
        snapshot_interval: float = 5.0,
        on_anomaly: Callable[[Anomaly], None] | None = None,
        on_records: Callable[[str, int], None] | None = None,
    ) -> None:
        self.catalog = catalog
        self.snapshots = snapshots
        self.output = output
        self.record_types = record_types
        self.ack = ack
        self.snapshot_every = snapshot_every
        self.snapshot_interval = snapshot_interval
        self.on_anomaly = on_anomaly
        self.on_records = on_records  # (topic, records a message carried, good and bad)
        self.partitions: dict[int, PartitionState] = {}
        self.counts = StageCounts()
        self._lock = asyncio.Lock()
        self._products = set(catalog.products)

    async def partition(self, number: int) -> PartitionState:
        state = self.partitions.get(number)
        if state is None:
            state = PartitionState(Engine(self.catalog))
            data = await self.snapshots.get(number)
            if data is not None:
                try:
                    snap = msgspec.msgpack.decode(data, type=PartitionSnapshot)
                    if snap.format != SNAPSHOT_FORMAT:
                        raise StateError(f"snapshot format {snap.format}, not {SNAPSHOT_FORMAT}")
                    state.engine.restore(snap.engine)
                    state.offsets = dict(snap.offsets)
                except (msgspec.DecodeError, msgspec.ValidationError, StateError) as exc:
                    # the partition goes on from a fresh state; the bytes are set aside (too
                    # large for a dead letter) and the dead letter says where
                    state = PartitionState(Engine(self.catalog))
                    key = await self.snapshots.set_aside(number, data)
                    await self._keep(
                        b"snapshot",
                        f"snapshot of partition {number}",
                        f"unreadable, the partition starts afresh ({len(data)} bytes kept in "
                        f"Redis at {key}): {exc}",
                        b"",
                        rule="unreadable snapshot",
                    )
            self.partitions[number] = state
        return state

    async def handle(self, message: InputMessage, handle: Any) -> None:
        """Process one message; never raises: failures become dead letters."""
        async with self._lock:
            await self._handle(message, handle)

    async def _handle(self, message: InputMessage, handle: Any) -> None:
        state = await self.partition(message.partition)
        if message.offset <= state.offsets.get(message.topic, -1):
            self.counts.skipped += 1
            self.ack(handle)  # already inside the restored state
            return
        try:
            await self._process(state, message)
        except Exception as exc:  # the event is kept, as a dead letter with the reason
            await self._deadletter(message, f"processing failed: {type(exc).__name__}: {exc}")
        state.offsets[message.topic] = message.offset
        state.pending.append(handle)
        if len(state.pending) >= self.snapshot_every:
            await self._snapshot(message.partition)

    async def _process(self, state: PartitionState, message: InputMessage) -> None:
        record_type = self.record_types[message.topic]
        decoded = decode_message(
            message.value,
            accept=(record_type,),
            known_products=self._products,
            now=datetime.now(UTC),  # a worker runs on wall-clock time
        )
        if self.on_records is not None:
            self.on_records(message.topic, len(decoded.records) + len(decoded.errors))
        for error in decoded.errors:
            await self._deadletter(
                message, error.describe(), error.raw, error.index, error.field, error.rule
            )
        # the whole message at once (grouped by series), with the outcomes of
        # `process` record by record, in their order
        self.counts.records += len(decoded.records)
        for k, outcome in state.engine.process_each(decoded.records):
            if outcome.errors:  # kept: the record (its place in a batch) and why
                raw, index = decoded.origin(k, message.value)
                for failure in outcome.errors:
                    await self._deadletter(message, failure.reason, raw, index, rule=failure.rule)
            await self.emit(outcome)

    async def emit(self, outcome: Outcome) -> None:
        for anomaly in outcome.anomalies:
            monitor = self.catalog.monitor(anomaly.monitor)
            key = fingerprint(alert_labels(anomaly, monitor))
            await self.output.anomaly(key, _encoder.encode(anomaly))
            self.counts.anomalies += anomaly.state == "anomalous"
            if self.on_anomaly is not None:
                self.on_anomaly(anomaly)

    async def _deadletter(
        self,
        message: InputMessage,
        reason: str,
        raw: bytes = b"",
        index: int | None = None,
        field_path: str | None = None,
        rule: str | None = None,
    ) -> None:
        source = f"{message.topic}[{message.partition}]@{message.offset}"
        await self._keep(
            message.topic.encode(), source, reason, raw or message.value, index, field_path, rule
        )

    async def _keep(
        self,
        key: bytes,
        source: str,
        reason: str,
        raw: bytes,
        index: int | None = None,
        field_path: str | None = None,
        rule: str | None = None,
    ) -> None:
        entry = DeadLetter(
            source=source,
            reason=reason,
            received_at=datetime.now(UTC),
            raw=raw,
            record_index=index,
            field=field_path,
            rule=reason.rpartition(": ")[2] if rule is None else rule,
        )
        self.counts.deadlettered += 1
        await self.output.deadletter(key, _encoder.encode(entry))

    async def snapshot(self, number: int) -> None:
        """Flush outputs, store the partition's state, then acknowledge what it covers."""
        async with self._lock:
            await self._snapshot(number)

    async def _snapshot(self, number: int) -> None:
        state = self.partitions.get(number)
        if state is None or not state.pending:
            return
        pending, state.pending = state.pending, []
        await self.output.flush()
        data = msgspec.msgpack.encode(
            PartitionSnapshot(SNAPSHOT_FORMAT, dict(state.offsets), state.engine.snapshot())
        )
        await self.snapshots.put(number, data)
        self.counts.snapshots += 1
        self.counts.snapshot_bytes = len(data)
        state.last_snapshot = time.monotonic()
        for handle in pending:
            self.ack(handle)

    async def snapshot_due(self) -> None:
        """Snapshot partitions whose last snapshot is older than the interval."""
        async with self._lock:
            now = time.monotonic()
            for number, state in list(self.partitions.items()):
                if state.pending and now - state.last_snapshot >= self.snapshot_interval:
                    await self._snapshot(number)

    async def release(self, numbers: set[int]) -> None:
        """Partitions moved away: store their state and forget them."""
        async with self._lock:
            for number in numbers:
                if number in self.partitions:
                    await self._snapshot(number)
                    del self.partitions[number]

    async def tick(self, now: float) -> None:
        """Absence and freshness checks on the owned partitions (wall clock)."""
        async with self._lock:
            for number, state in list(self.partitions.items()):
                outcome = state.engine.tick(now)
                for error in outcome.errors:  # an absence or freshness check that failed
                    at = datetime.fromtimestamp(now, UTC).isoformat()
                    source = f"tick of partition {number} at {at}"
                    await self._keep(b"tick", source, error.reason, b"", rule=error.rule)
                await self.emit(outcome)
