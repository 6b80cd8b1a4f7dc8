"""Per (topic, signal key) buffers that become one message each, and the errors of sends."""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

from lupus_stream.client.records import MAX_BATCH_BYTES, encoded_size
from lupus_stream.contracts.decode import encode_records
from lupus_stream.contracts.records import InputRecord
from lupus_stream.runtimes.kafka.send import signal_key


@dataclass(frozen=True, slots=True)
class Batch:
    """Records of one signal key bound for one topic: one Kafka message."""

    topic: str
    key: str
    records: tuple[InputRecord, ...]

    def encode(self) -> bytes:
        return encode_records(self.records)


@dataclass(slots=True)
class _Buffer:
    started: float
    records: list[InputRecord] = field(default_factory=list)
    size: int = 2  # bytes of the JSON list: "[" + records joined by "," + "]"


class Batcher:
    """Buffers records per (topic, signal key) and says which buffers are ready to send.

    `now` is any monotonic clock in seconds (the client passes `loop.time()`). A buffer is
    ready when it holds `max_batch` records, when the next record would make its message
    larger than `max_bytes`, or (`due`) `linger` seconds after its first record.
    """

    def __init__(
        self, max_batch: int = 500, linger: float = 0.05, max_bytes: int = MAX_BATCH_BYTES
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not linger >= 0 or math.isinf(linger):
            raise ValueError(f"linger must be a finite number of seconds >= 0, got {linger}")
        self.max_batch, self.linger, self.max_bytes = max_batch, linger, max_bytes
        # Oldest first: a new buffer always starts later than every existing one.
        self._buffers: OrderedDict[tuple[str, str], _Buffer] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        """Records buffered."""
        return self._count

    def add(
        self, topic: str, record: InputRecord, now: float, size: int | None = None
    ) -> list[Batch]:
        """Buffer one record; returns the batches that became ready (at most two)."""
        if size is None:
            size = encoded_size(record, self.max_bytes)
        slot = (topic, signal_key(record))
        ready: list[Batch] = []
        buffer = self._buffers.get(slot)
        if buffer is not None and buffer.size + 1 + size > self.max_bytes:
            ready.append(self._pop(slot))
            buffer = None
        if buffer is None:
            buffer = self._buffers[slot] = _Buffer(now)
            buffer.size += size
        else:
            buffer.size += 1 + size
        buffer.records.append(record)
        self._count += 1
        if len(buffer.records) >= self.max_batch:
            ready.append(self._pop(slot))
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest buffer is due, or None when nothing is buffered."""
        for buffer in self._buffers.values():
            return buffer.started + self.linger
        return None

    def due(self, now: float) -> list[Batch]:
        """Take the buffers whose linger has passed, oldest first."""
        ready: list[Batch] = []
        while self._buffers:
            slot, buffer = next(iter(self._buffers.items()))
            if buffer.started + self.linger > now:
                break
            ready.append(self._pop(slot))
        return ready

    def drain(self) -> list[Batch]:
        """Take every buffer, oldest first."""
        ready = [self._pop(slot) for slot in list(self._buffers)]
        return ready

    def _pop(self, slot: tuple[str, str]) -> Batch:
        buffer = self._buffers.pop(slot)
        self._count -= len(buffer.records)
        return Batch(slot[0], slot[1], tuple(buffer.records))


@dataclass(frozen=True, slots=True)
class SendFailure:
    """One message the broker did not take."""

    topic: str
    key: str
    records: int
    error: BaseException

    def describe(self) -> str:
        error = f"{type(self.error).__name__}: {self.error}".rstrip(": ")
        return f"{self.topic} key {self.key!r} ({self.records} records): {error}"


class LupusSendError(Exception):
    """Messages failed since the last flush.

    `messages` and `records` count all of them; `failures` details the first
    `MAX_FAILURES_KEPT` (a long broker outage must not fill the memory with errors).
    """

    def __init__(self, failures: list[SendFailure], messages: int, records: int) -> None:
        self.failures, self.messages, self.records = failures, messages, records
        more = f" (and {messages - 1} more)" if messages > 1 else ""
        super().__init__(
            f"{messages} messages ({records} records) were not sent: {failures[0].describe()}{more}"
        )


class BacklogFullError(RuntimeError):
    """More records are waiting for the broker than `max_pending` allows."""
