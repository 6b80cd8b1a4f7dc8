"""The integration services are real: a Redis server and a single-node Kafka broker.

scripts/test-services (run by `make test`) starts both and exports their addresses. These
tests fail, never skip, without them, so a CI run that lost its services cannot pass quietly.
They check what the Kafka/Faust runtime relies on: topic creation through the admin API,
keyed produce, a consumer group that commits (so `__consumer_offsets` works on one node)
and an idempotent producer.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.kafka_harness import service

T = TypeVar("T")

STEP_TIMEOUT = 30.0  # seconds for any single await against the broker
CONSUME_TIMEOUT = 60.0  # seconds to read a topic back, group join included


@pytest.fixture(scope="module")
def redis_url() -> str:
    return service("LUPUS_TEST_REDIS_URL")


@pytest.fixture(scope="module")
def kafka_bootstrap() -> str:
    return service("LUPUS_TEST_KAFKA")


async def step(aw: Awaitable[T], timeout: float = STEP_TIMEOUT) -> T:
    """Await with a timeout, so a broker that stops answering fails the test instead of hanging."""
    return await asyncio.wait_for(aw, timeout)


def unique(prefix: str) -> str:
    # Unique names, so tests can rerun against a reused (long-lived) broker.
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await step(admin.start())
    try:
        topic = NewTopic(name=name, num_partitions=partitions, replication_factor=1)
        await step(admin.create_topics([topic]))
        # The broker answers the creation before its metadata lists the partitions.
        for _ in range(50):
            described = await step(admin.describe_topics([name]))
            if described[0]["partitions"]:
                break
            await asyncio.sleep(0.1)
        assert len(described[0]["partitions"]) == partitions
    finally:
        await step(admin.close())


async def produce(
    bootstrap: str, topic: str, messages: dict[bytes, bytes], **config: object
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **config)
    await step(producer.start())
    try:
        for key, value in messages.items():
            await step(producer.send_and_wait(topic, value, key=key))
    finally:
        await step(producer.stop())


async def read_back(consumer: AIOKafkaConsumer, count: int) -> list[tuple[int, bytes, bytes]]:
    """Poll until `count` records arrived; (partition, key, value) for each."""
    records: list[tuple[int, bytes, bytes]] = []
    async with asyncio.timeout(CONSUME_TIMEOUT):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=1000)
            for tp, batch in batches.items():
                records.extend((tp.partition, r.key, r.value) for r in batch)
    return records


def test_redis_set_get(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        key = unique("lupus-test")
        assert client.set(key, b"value", ex=60)
        assert client.get(key) == b"value"
        info = client.info("server")
        assert info["redis_version"]  # a real server, not a stand-in
    finally:
        client.close()


def test_kafka_consumer_group_reads_and_commits(kafka_bootstrap: str) -> None:
    topic, group = unique("lupus-it-topic"), unique("lupus-it-group")
    messages = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(10)}

    async def scenario() -> None:
        await create_topic(kafka_bootstrap, topic, partitions=3)
        await produce(kafka_bootstrap, topic, messages)
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await step(consumer.start())
        try:
            records = await read_back(consumer, len(messages))
            assert {key: value for _, key, value in records} == messages
            # Keyed records spread over the partitions (murmur2 of these fixed keys).
            assert len({partition for partition, _, _ in records}) > 1
            # Committing needs the group coordinator, i.e. a working __consumer_offsets.
            await step(consumer.commit())
            committed = [await step(consumer.committed(TopicPartition(topic, p))) for p in range(3)]
            assert sum(offset or 0 for offset in committed) == len(messages)
        finally:
            await step(consumer.stop())

    asyncio.run(scenario())


def test_kafka_idempotent_producer(kafka_bootstrap: str) -> None:
    topic = unique("lupus-it-idem")
    messages = {f"key-{i}".encode(): f"value-{i}".encode() for i in range(5)}

    async def scenario() -> None:
        await create_topic(kafka_bootstrap, topic, partitions=1)
        # Idempotence needs a producer id from the broker (InitProducerId).
        await produce(kafka_bootstrap, topic, messages, enable_idempotence=True)
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest"
        )
        await step(consumer.start())
        try:
            records = await read_back(consumer, len(messages))
            assert [(key, value) for _, key, value in records] == list(messages.items())
        finally:
            await step(consumer.stop())

    asyncio.run(scenario())
