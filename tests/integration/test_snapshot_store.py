"""RedisSnapshotStore against a real Redis (LUPUS_TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import uuid

import redis.asyncio as aioredis

from lupus_stream.runtimes.kafka.snapshots import RedisSnapshotStore
from tests.integration.kafka_harness import service


def test_an_unreadable_snapshot_is_set_aside_under_a_key_of_its_own() -> None:
    prefix = f"lupus-test:{uuid.uuid4().hex}:"

    async def scenario() -> tuple[bytes | None, bytes | None, bytes | None, str, str]:
        client = aioredis.from_url(service("LUPUS_TEST_REDIS_URL"))
        try:
            store = RedisSnapshotStore(client, prefix, "app")
            await store.put(3, b"current")
            first = await store.set_aside(3, b"broken")
            second = await store.set_aside(3, b"broken again")
            kept = await client.get(first)
            current = await store.get(3)
            await store.put(3, b"next")  # the next snapshot leaves the kept one alone
            after = await client.get(first)
            return current, kept, after, first, second
        finally:
            keys = [key async for key in client.scan_iter(match=prefix + "*")]
            if keys:
                await client.delete(*keys)
            await client.aclose()

    current, kept, after, first, second = asyncio.run(scenario())
    assert (current, kept, after) == (b"current", b"broken", b"broken")
    assert first.startswith(f"{prefix}snapshot:app:3:unreadable:") and first != second
