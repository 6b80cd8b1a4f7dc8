"""Shared pieces of the Kafka runtime tests: services, isolated names, workers, topic reads.

Each test gets its own topic prefix, consumer group (app id) and Redis key prefix, so
tests share one broker and one Redis without seeing each other's data.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

HINT = "run the tests with scripts/test-services (make test)"


def service(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} not set: {HINT}")
    return value


@dataclass
class Namespace:
    """Names and settings that isolate one test run on the shared services."""

    workdir: Path
    kafka: str = field(default_factory=lambda: service("LUPUS_TEST_KAFKA"))
    redis_url: str = field(default_factory=lambda: service("LUPUS_TEST_REDIS_URL"))
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    partitions: int = 4

    @property
    def prefix(self) -> str:
        return f"t{self.tag}."

    @property
    def redis_prefix(self) -> str:
        return f"lupus-it-{self.tag}:"

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            LUPUS_KAFKA_BOOTSTRAP_SERVERS=self.kafka,
            LUPUS_KAFKA_TOPIC_PREFIX=self.prefix,
            LUPUS_KAFKA_REPLICATION_FACTOR="1",
            LUPUS_KAFKA_PARTITIONS=str(self.partitions),
            LUPUS_REDIS_URL=self.redis_url,
            LUPUS_REDIS_KEY_PREFIX=self.redis_prefix,
            LUPUS_WORKER_APP_ID=f"lupus-it-{self.tag}",
            LUPUS_WORKER_DATA_DIR=str(self.workdir / "worker-data"),
            LUPUS_WORKER_METRICS_PORT="0",
            LUPUS_WORKER_SNAPSHOT_INTERVAL="0.5",
            LUPUS_DETECTORS=str(self.workdir / "detectors"),
            LUPUS_TOPICS=str(Path(__file__).parents[2] / "topics"),
        )
        env.update(extra)
        return env

    def lupus(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lupus_stream.cli.main", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


class Worker:
    """A `lupus-stream worker` process, started and stopped like a deployment would."""

    def __init__(self, ns: Namespace, name: str, instance: str | None = None, **env: str) -> None:
        """`instance` is the static group membership id (a pod name); default: `name`."""
        self.log_path = ns.workdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lupus_stream.cli.main", "worker"],
            env=ns.env(
                LUPUS_WORKER_DATA_DIR=str(ns.workdir / f"data-{name}"),
                LUPUS_WORKER_INSTANCE_ID=instance or name,
                **env,
            ),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while "started against" not in self.log():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker did not start:\n{self.log()}")
            time.sleep(0.2)

    def metrics_url(self) -> str:
        for line in self.log().splitlines():
            if line.startswith("metrics: "):
                return line.split(" ", 1)[1].strip()
        raise RuntimeError(f"no metrics line:\n{self.log()}")

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        code = stop(self.proc, sig, timeout)
        self._log.close()
        return code


def stop(proc: subprocess.Popen[Any], sig: int, timeout: float) -> int:
    """Send `sig` and wait for the exit code; killed (and the timeout raised) after
    `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def run(coro: Any, timeout: float = 120) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def produce(ns: Namespace, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=ns.kafka, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send_and_wait(ns.topic(topic), value, key=key)
    finally:
        await producer.stop()


async def read_until(
    ns: Namespace, topic: str, done: Any, timeout: float = 60
) -> list[dict[str, Any]]:
    """Read a topic from the start until `done(records)` is true or the timeout passes."""
    consumer = AIOKafkaConsumer(
        ns.topic(topic),
        bootstrap_servers=ns.kafka,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while not done(records) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(json.loads(m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


def metric_lines(points: Iterator[tuple[str, str, float | None]]) -> list[tuple[bytes, bytes]]:
    out = []
    for product, ts, value in points:
        record = {"type": "metric", "product": product, "name": "orders", "ts": ts, "value": value}
        out.append((f"{product}/orders".encode(), json.dumps(record).encode()))
    return out


async def wait_drained(ns: Namespace, topics: list[str], timeout: float = 90) -> None:
    """Wait until the worker group has committed every offset of `topics`."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.structs import TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=ns.kafka)
    consumer = AIOKafkaConsumer(bootstrap_servers=ns.kafka)
    await admin.start()
    await consumer.start()
    group = f"lupus-it-{ns.tag}"
    deadline = time.monotonic() + timeout
    try:
        tps = [TopicPartition(ns.topic(t), p) for t in topics for p in range(ns.partitions)]
        while True:
            ends = await consumer.end_offsets(tps)
            committed = await admin.list_consumer_group_offsets(group)
            done = all(
                ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp])
                for tp in tps
            )
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not drained: ends {ends}, committed {committed}")
            await asyncio.sleep(0.5)
    finally:
        await consumer.stop()
        await admin.close()


async def read_all(ns: Namespace, topic: str) -> list[dict[str, Any]]:
    """Everything currently in a topic."""
    from aiokafka.structs import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=ns.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(ns.topic(topic), p) for p in range(ns.partitions)]
        partitions = consumer.partitions_for_topic(ns.topic(topic)) or set()
        tps = [TopicPartition(ns.topic(topic), p) for p in sorted(partitions)] or tps
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[dict[str, Any]] = []

        async def behind() -> bool:
            for tp in tps:
                if await consumer.position(tp) < ends[tp]:
                    return True
            return False

        while await behind():
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(json.loads(m.value) for m in messages)
        return records
    finally:
        await consumer.stop()


async def wait_outbox_empty(ns: Namespace, timeout: float = 60) -> None:
    """Wait until every committed alert transition has been published."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(ns.redis_url)
    deadline = time.monotonic() + timeout
    try:
        while await client.llen(f"{ns.redis_prefix}outbox"):
            if time.monotonic() > deadline:
                raise TimeoutError("alert outbox not drained")
            await asyncio.sleep(0.2)
    finally:
        await client.aclose()
