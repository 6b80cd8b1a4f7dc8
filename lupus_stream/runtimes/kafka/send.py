"""Publish JSON-lines records to an input topic, keyed by signal.

Each line is one record or a batch. A batch is split by signal key, so that every
message lands on the partition that owns its series; records of one key travel
together as one message (amortising the per-message cost).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from lupus_stream.contracts import decode_message, encode_records
from lupus_stream.contracts.records import InputRecord, Label, MetricPoint, PredictionLog


def signal_key(record: InputRecord) -> str:
    """The message key that co-locates a series (and a model's predictions and labels)."""
    if isinstance(record, MetricPoint):
        return f"{record.product}/{record.name}"
    if isinstance(record, PredictionLog | Label):
        return f"{record.product}/{record.model}"
    return f"{record.product}/{record.source}"


def group_by_key(records: Iterable[InputRecord]) -> dict[str, list[InputRecord]]:
    groups: dict[str, list[InputRecord]] = defaultdict(list)
    for record in records:
        groups[signal_key(record)].append(record)
    return groups


@dataclass
class SendCounts:
    lines: int = 0
    records: int = 0
    messages: int = 0
    rejected: list[str] | None = None


async def send_lines(
    producer: AIOKafkaProducer,
    topic: str,
    record_type: str,
    lines: Iterable[bytes],
    on_line: Callable[[int], None] | None = None,
) -> SendCounts:
    """Validate each line locally and send the good records; report the bad ones."""
    counts = SendCounts(rejected=[])
    futures = []
    for number, line in enumerate(lines, start=1):
        counts.lines += 1
        if on_line is not None:
            on_line(len(line))
        if not line.strip():
            continue
        decoded = decode_message(line, accept=(record_type,))
        for error in decoded.errors:
            assert counts.rejected is not None
            counts.rejected.append(f"line {number}: {error.describe()}")
        for key, batch in group_by_key(decoded.records).items():
            futures.append(await producer.send(topic, encode_records(batch), key=key.encode()))
            counts.records += len(batch)
            counts.messages += 1
    for future in futures:
        await future
    return counts
