"""The Kafka runtime's alert stage on a batch of anomalies, against a real Redis: when the
batch's writes fail as a whole, only the anomaly that fails alone becomes a dead letter."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lupus_stream.alerting.async_pipeline import AsyncAlertProcessor
from lupus_stream.alerting.lifecycle import AlertState
from lupus_stream.alerting.redis_store import RedisAlertStore
from lupus_stream.contracts.records import AlertEvent
from lupus_stream.contracts.topics import load_topics
from lupus_stream.monitors import Catalog
from lupus_stream.runtimes.kafka.app import KafkaRuntime
from lupus_stream.settings import KafkaSettings, Settings
from tests.integration.test_redis_alert_store import (
    REGIONS,
    STORY,
    lookup,
    make_monitor,
    prefix,
    redis_url,
    regional,
)

__all__ = ["prefix", "redis_url"]  # fixtures
TOPICS = Path(__file__).resolve().parents[2] / "topics"
MONITOR = make_monitor()  # fires on the first anomaly


def broken(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
    raise ValueError("this transition always fails")


def test_a_failing_batch_is_applied_one_by_one(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        settings = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
        runtime = KafkaRuntime(settings, Catalog(products={}), load_topics(TOPICS))
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        processor = AsyncAlertProcessor(lookup(MONITOR), store)
        runtime.alert_store, runtime.processor = store, processor
        dead: list[tuple[Any, str]] = []

        async def deadletter(event: Any, reason: str) -> None:
            dead.append((event, reason))

        runtime._deadletter = deadletter  # type: ignore[method-assign]
        good = [regional(STORY[0], r) for r in REGIONS]
        events = [SimpleNamespace(name=a.id) for a in good]
        batch: list[Any] = [
            (e, processor.transition_for(a, [])) for e, a in zip(events, good, strict=True)
        ]
        bad_event = SimpleNamespace(name="bad")
        batch.insert(1, (bad_event, (batch[0][1][0], broken)))
        with pytest.raises(ValueError):
            await store.apply_many([item for _, item in batch])  # the batch fails as a whole
        assert await runtime._commit_alerts(batch) is True  # the others fired
        assert [(e.name, reason) for e, reason in dead] == [
            ("bad", "alert stage: ValueError: this transition always fails")
        ]
        states = await store.active()
        assert sorted(s.status for s in states) == ["firing"] * len(REGIONS)
        assert await store.outbox_size() == len(REGIONS)
        await store.close()

    asyncio.run(scenario())
