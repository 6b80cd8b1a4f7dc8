"""Partition snapshots of the detect stage, kept in Redis.

Redis rather than a Faust table: snapshots are written from timers and rebalance
handlers (which Faust tables forbid), other tools can read them, and a restore is one
GET instead of a changelog replay. The cost is one SET of the whole partition's state
per snapshot; keep `snapshot_every` high enough that this stays a small share of the
processing time (the size is exported as a metric).
"""

from __future__ import annotations

import uuid
from typing import Any


class RedisSnapshotStore:
    def __init__(self, client: Any, prefix: str, app_id: str) -> None:
        self.client = client
        self.prefix = f"{prefix}snapshot:{app_id}:"

    async def get(self, partition: int) -> bytes | None:
        value = await self.client.get(self.prefix + str(partition))
        return None if value is None else bytes(value)

    async def put(self, partition: int, data: bytes) -> None:
        await self.client.set(self.prefix + str(partition), data)

    async def set_aside(self, partition: int, data: bytes) -> str:
        """Keep a snapshot that cannot be restored under a key of its own (the next
        snapshot overwrites the partition's key); returns that key."""
        key = f"{self.prefix}{partition}:unreadable:{uuid.uuid4().hex[:12]}"
        await self.client.set(key, data)
        return key
