"""The producer SDK against a real broker: exactly once, batched, keyed, decodable.

Run under scripts/test-services (it sets LUPUS_TEST_KAFKA); without a broker the fixture
fails instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from lupus_stream.client import AsyncLupusClient, LupusClient, LupusSendError
from lupus_stream.contracts import decode_message
from lupus_stream.contracts.records import MetricPoint
from lupus_stream.contracts.topics import INPUT_TOPICS
from lupus_stream.runtimes.kafka.send import signal_key
from lupus_stream.settings import KafkaSettings, Settings
from tests.integration.kafka_harness import Namespace, run, service

T0 = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture()
def ns(tmp_path: Path) -> Namespace:
    kafka = service("LUPUS_TEST_KAFKA")  # RuntimeError with a hint when missing: never a skip
    # The client needs no Redis; the namespace only passes the URL on to the CLI.
    redis_url = os.environ.get("LUPUS_TEST_REDIS_URL", "redis://127.0.0.1:1/0")
    namespace = Namespace(workdir=tmp_path, kafka=kafka, redis_url=redis_url)
    created = namespace.lupus("topics", "create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created") == 7, created.stdout
    return namespace


class Message:
    def __init__(self, key: bytes | None, value: bytes, partition: int) -> None:
        self.key, self.value, self.partition = key, value, partition

    def records(self, topic: str) -> list[Any]:
        decoded = decode_message(self.value, accept=(INPUT_TOPICS[topic],))
        assert decoded.errors == [], [e.describe() for e in decoded.errors]
        assert decoded.records, "empty message"
        return list(decoded.records)


async def consume(
    ns: Namespace,
    topic: str,
    records: int,
    settle: float = 1.5,
    timeout: float = 60,
    prefix: str | None = None,
) -> list[Message]:
    """Read `topic` from the start until `records` records arrived, then `settle` seconds more
    (anything arriving then would be a duplicate)."""
    consumer = AIOKafkaConsumer(
        (ns.prefix if prefix is None else prefix) + topic,
        bootstrap_servers=ns.kafka,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    messages: list[Message] = []
    count = 0
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            if count >= records:
                settled_at = settled_at or time.monotonic() + settle
                if time.monotonic() >= settled_at:
                    break
            batch = await consumer.getmany(timeout_ms=300)
            for partition, items in batch.items():
                for item in items:
                    message = Message(item.key, item.value, partition.partition)
                    messages.append(message)
                    count += len(message.records(topic))
    finally:
        await consumer.stop()
    return messages


def check_keys(topic: str, messages: list[Message]) -> list[Any]:
    """Every record is in a message keyed by its signal key; a key stays on one partition."""
    partitions: dict[bytes, set[int]] = defaultdict(set)
    out: list[Any] = []
    for message in messages:
        records = message.records(topic)
        assert message.key is not None
        assert {signal_key(r).encode() for r in records} == {message.key}
        partitions[message.key].add(message.partition)
        out.extend(records)
    assert all(len(p) == 1 for p in partitions.values()), partitions
    return out


def test_async_client_delivers_every_record_once_in_keyed_batches(ns: Namespace) -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=ns.kafka, topic_prefix=ns.prefix))
    series, points, models, per_model = ("orders", "visits", "refunds"), 250, ("ranker", "ctr"), 60

    async def publish() -> None:
        async with AsyncLupusClient(settings, max_batch=100, linger=0.05) as lupus:
            for i in range(points):
                for name in series:
                    lupus.report_metric("shop", name, float(i), ts=T0 + timedelta(minutes=i))
                if i % 50 == 0:
                    await asyncio.sleep(0.06)  # let some buffers go by linger
            await lupus.flush()
            for model in models:
                for i in range(per_model):
                    features: dict[str, float | str | bool | None] = {
                        "price": i * 1.5,
                        "country": "de",
                        "new": i % 2 == 0,
                        "x": None,
                    }
                    lupus.log_prediction("shop", model, "v3", f"{model}-{i}", features, i / 100)
                    if i % 2:
                        lupus.log_label("shop", model, f"{model}-{i}", i % 3 == 0)
            for day in range(5):
                lupus.report_source_landed("shop", "orders_table", f"2026-03-0{day + 1}", day)

    run(publish())

    metric_messages = run(consume(ns, "lupus.metrics", len(series) * points))
    metrics = check_keys("lupus.metrics", metric_messages)
    assert len(metrics) == len(series) * points
    assert len(metric_messages) < len(metrics) / 10  # batched
    for name in series:  # each series exactly once, in publish order
        values = [m.value for m in metrics if m.name == name]
        assert values == [float(i) for i in range(points)]

    predictions = check_keys(
        "lupus.predictions", run(consume(ns, "lupus.predictions", len(models) * per_model))
    )
    ids = Counter(p.request_id for p in predictions)
    assert ids == Counter(f"{m}-{i}" for m in models for i in range(per_model))
    assert predictions[0].features["country"] == "de" and predictions[0].model_version == "v3"

    label_messages = run(consume(ns, "lupus.labels", len(models) * per_model // 2))
    labels = check_keys("lupus.labels", label_messages)
    assert Counter(x.request_id for x in labels) == Counter(
        f"{m}-{i}" for m in models for i in range(1, per_model, 2)
    )
    assert len(label_messages) == len(models)  # one message per model

    sources = check_keys("lupus.sources", run(consume(ns, "lupus.sources", 5)))
    assert [s.row_count for s in sources] == list(range(5))


def test_sync_client_from_several_threads(ns: Namespace) -> None:
    threads_n, per_thread = 6, 400
    with LupusClient(
        bootstrap_servers=ns.kafka, topic_prefix=ns.prefix, max_batch=50, linger=0.02
    ) as lupus:
        assert lupus.topic(MetricPoint) == ns.topic("lupus.metrics")

        def work(t: int) -> None:
            for i in range(per_thread):
                name = "shared" if i % 2 else f"own{t}"
                lupus.report_metric("batch", name, float(t * 10_000 + i), labels={"t": str(t)})
                if i == per_thread // 2:
                    lupus.flush()

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    total = threads_n * per_thread
    messages = run(consume(ns, "lupus.metrics", total))
    metrics = check_keys("lupus.metrics", messages)
    assert Counter(m.value for m in metrics) == Counter(
        float(t * 10_000 + i) for t in range(threads_n) for i in range(per_thread)
    )
    assert len(messages) < total / 5
    for t in range(threads_n):  # one thread's records keep their order within a key
        for name in ("shared", f"own{t}"):
            mine = [m.value for m in metrics if m.name == name and m.labels["t"] == str(t)]
            assert mine == sorted(mine) and len(mine) == per_thread // 2


def test_linger_sends_without_flush(ns: Namespace) -> None:
    async def main() -> list[Message]:
        async with AsyncLupusClient(
            bootstrap_servers=ns.kafka, topic_prefix=ns.prefix, linger=0.1
        ) as lupus:
            for i in range(3):
                lupus.report_metric("shop", "orders", float(i))
            # Read while the client is still open: only the linger task can have sent them.
            return await consume(ns, "lupus.metrics", 3, settle=0.5, timeout=30)

    messages = run(main())
    assert len(messages) == 1
    assert [m.value for m in messages[0].records("lupus.metrics")] == [0.0, 1.0, 2.0]


def test_broker_errors_are_raised_at_flush(ns: Namespace) -> None:
    prefix = ns.prefix + "small."

    async def main() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=ns.kafka)
        await admin.start()
        try:
            await admin.create_topics(
                [
                    NewTopic(
                        name=prefix + "lupus.metrics",
                        num_partitions=1,
                        replication_factor=1,
                        topic_configs={"max.message.bytes": "2000"},
                    )
                ]
            )
        finally:
            await admin.close()
        lupus = AsyncLupusClient(bootstrap_servers=ns.kafka, topic_prefix=prefix, linger=60)
        await lupus.start()
        try:
            lupus.report_metric("shop", "small", 1.0)
            await lupus.flush()  # one small message: fine
            for i in range(200):  # ~20 kB in one message: the topic refuses it
                lupus.report_metric("shop", "big", float(i))
            with pytest.raises(LupusSendError) as caught:
                await lupus.flush()
            assert caught.value.messages == 1 and caught.value.records == 200
            assert "TooLarge" in str(caught.value), str(caught.value)
            for i in range(2, 5):  # the same partition again: the client still works
                lupus.report_metric("shop", "small", float(i))
                await lupus.flush()
        finally:
            await lupus.stop()

    run(main())
    messages = run(consume(ns, "lupus.metrics", 4, prefix=prefix))
    values = [r.value for r in check_keys("lupus.metrics", messages)]
    assert values == [1.0, 2.0, 3.0, 4.0]
