"""Publish JSON-lines records to an input topic, keyed by signal.

Each line is one record or a batch. A batch is split by signal key, so that every
message lands on the partition that owns its series; records of one key travel
together as one message (amortising the per-message cost).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from aiokafka import AIOKafkaProducer

from lupus_stream.contracts import DeadLetter, decode_message, encode_records
from lupus_stream.contracts.records import InputRecord, Label, MetricPoint, PredictionLog

_encoder = msgspec.json.Encoder()


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
    topics: dict[str, str],
    deadletter_topic: str,
    lines: Iterable[bytes],
    source: str = "stdin",
    on_line: Callable[[int], None] | None = None,
) -> SendCounts:
    """Validate each line locally and send its records to their topics.

    `topics` maps the accepted record types to topic names. Bad records are not sent to
    an input topic but to the dead-letter topic, with the reason, and listed in the counts.
    """
    counts = SendCounts(rejected=[])
    futures = []
    accept = tuple(topics)
    for number, line in enumerate(lines, start=1):
        counts.lines += 1
        if on_line is not None:
            on_line(len(line))
        if not line.strip():
            continue
        decoded = decode_message(line.rstrip(b"\r\n"), accept=accept)
        for error in decoded.errors:
            assert counts.rejected is not None
            counts.rejected.append(f"line {number}: {error.describe()}")
            entry = DeadLetter(
                source=f"{source}:{number}",
                reason=error.describe(),
                received_at=datetime.now(UTC),
                raw=error.raw or line,
                record_index=error.index,
                field=error.field,
                rule=error.rule,
            )
            futures.append(await producer.send(deadletter_topic, _encoder.encode(entry)))
        by_topic: dict[str, list[InputRecord]] = defaultdict(list)
        for record in decoded.records:
            by_topic[topics[record_type(record)]].append(record)
        for topic, records in by_topic.items():
            for key, batch in group_by_key(records).items():
                futures.append(await producer.send(topic, encode_records(batch), key=key.encode()))
                counts.records += len(batch)
                counts.messages += 1
    for future in futures:
        await future
    return counts


def record_type(record: InputRecord) -> str:
    return type(record).__struct_config__.tag  # type: ignore[return-value]
