"""Which alert transitions a topic already holds, read back from the tail of each partition.

The alert outbox publishes a batch, waits for the broker's acknowledgement and only then
trims it. A worker killed between the two leaves a batch that may or may not be on the
topic; the next drainer asks this module instead of publishing it again. Only the drain
that holds the outbox lock publishes, so an interrupted batch of `n` events lies within
the last `n` messages of every partition: that tail is all that needs reading.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer

from lupus_stream.alerting.redis_store import transition_id
from lupus_stream.contracts import AlertEvent

_decoder = msgspec.json.Decoder(AlertEvent)


async def published_transitions(
    options: dict[str, Any], topic: str, events: list[AlertEvent], timeout: float = 30.0
) -> set[str]:
    """The `transition_id`s of `events` found in the last `len(events)` messages per partition.

    Raises TimeoutError if the tail cannot be read within `timeout` seconds (the caller
    keeps the batch and tries again later).
    """
    wanted = {transition_id(e) for e in events}
    # Subscribed without a group: the consumer is assigned every partition at start.
    consumer = AIOKafkaConsumer(topic, enable_auto_commit=False, group_id=None, **options)
    await consumer.start()
    try:
        tps = sorted(consumer.assignment())
        if not tps:
            return set()
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > starts[tp]}
        for tp in todo:
            consumer.seek(tp, max(starts[tp], ends[tp] - len(events)))
        found: set[str] = set()
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading back the tail of {topic} took over {timeout}s")
            batches = await consumer.getmany(*todo, timeout_ms=500)
            for tp, messages in batches.items():
                found.update(_id(m.value) for m in messages if m.offset < ends[tp])
            for tp in list(todo):
                if await consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        return found & wanted
    finally:
        await consumer.stop()


def _id(value: bytes | None) -> str:
    try:
        return transition_id(_decoder.decode(value or b""))
    except (msgspec.ValidationError, msgspec.DecodeError):
        return ""  # not an alert event: cannot be one of ours
