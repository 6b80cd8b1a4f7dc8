"""A Faust worker that only decodes: the ceiling of any pipeline built on Faust agents.

    python benchmarks/faust_decode_only.py TOPIC MESSAGES GROUP

Run by `kafka_throughput.py` in the same run as the bare consumer and the real worker,
with the worker's settings from the environment (`LUPUS_*`). One agent, concurrency 1,
in a Faust app built as the worker's is (`faust_app`, shortened long-poll), reads TOPIC
in a consumer group of its own, runs
`decode_message` on each message as the bare consumer does, acknowledges it and does
nothing else. Prints `records seconds`: records decoded, and the seconds from the first
message to the last one decoded (the window the bare consumer is timed on); exits 1 if
any record failed to decode, as the bare consumer does.
"""

from __future__ import annotations

import asyncio
import sys
import time

import faust

from lupus_stream.contracts import decode_message
from lupus_stream.monitors.loader import load_catalog
from lupus_stream.runtimes.kafka.app import FETCH_MAX_WAIT_MS, faust_app, shorten_long_poll
from lupus_stream.settings import load_settings

TIMEOUT = 600.0


async def decode_only(topic_name: str, messages: int, group: str) -> tuple[int, int, float]:
    settings = load_settings()
    products = set(load_catalog(settings.detectors).products)
    partitions = settings.kafka.partitions or 1  # creates no topic: TOPIC exists
    app = faust_app(settings, group, f"{settings.worker.data_dir}-{group}", partitions)
    topic = app.topic(
        topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    done = asyncio.Event()
    seen = records = errors = 0
    first = last = 0.0

    async def agent(stream: faust.StreamT[bytes]) -> None:
        nonlocal seen, records, errors, first, last
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            if not seen:
                first = time.perf_counter()
            decoded = decode_message(event.value, accept=("metric",), known_products=products)
            records += len(decoded.records)
            errors += len(decoded.errors)
            event.ack()
            seen += 1
            if seen == messages:
                last = time.perf_counter()
                done.set()

    app.agent(topic, name="decode-only", concurrency=1)(agent)
    await app.start()
    shorten_long_poll(app, FETCH_MAX_WAIT_MS)
    try:
        await asyncio.wait_for(done.wait(), TIMEOUT)
    finally:
        await app.stop()
    return records, errors, last - first


def main() -> int:
    topic, messages, group = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    records, errors, seconds = asyncio.run(decode_only(topic, messages, group))
    if errors:
        print(f"faust_decode_only: {errors} decode errors", file=sys.stderr)
        return 1
    print(f"{records} {seconds:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
