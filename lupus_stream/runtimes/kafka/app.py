"""The Faust application: agents that move bytes between topics and the pure stages.

Guard-rails (see faust-streaming's known traps): concurrency 1 per agent, because a
higher one can commit past an in-flight message; raw serializers on every topic, so
decoding happens inside our try block and a bad message becomes a dead letter instead
of being acknowledged and skipped by Faust; web server off (metrics are served by
prometheus_client); `stream_wait_empty` off, because the detect stage holds its events
unacknowledged until a snapshot covers them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import msgspec
from faust.types import TP

from lupus_stream.alerting.async_pipeline import AsyncAlertProcessor
from lupus_stream.alerting.pipeline import catalog_lookup
from lupus_stream.alerting.redis_store import DEFAULT_DRAIN_LIMIT, RedisAlertStore, Transition
from lupus_stream.alerting.silences import Silence
from lupus_stream.contracts import AlertEvent, Anomaly, DeadLetter
from lupus_stream.contracts.topics import (
    ALERTS_TOPIC,
    ANOMALIES_TOPIC,
    DEADLETTER_TOPIC,
    INPUT_TOPICS,
    TopicSpec,
)
from lupus_stream.monitors import Catalog
from lupus_stream.runtimes.kafka import metrics
from lupus_stream.runtimes.kafka.admin import client_options
from lupus_stream.runtimes.kafka.detect import DetectStage, InputMessage
from lupus_stream.runtimes.kafka.readback import published_transitions
from lupus_stream.runtimes.kafka.snapshots import RedisSnapshotStore
from lupus_stream.settings import KafkaSettings, Settings

_log = logging.getLogger(__name__)
STOP_DRAIN_SECONDS = 10.0  # how long a stopping worker waits for its alert publisher
FETCH_MAX_WAIT_MS = 100  # long-poll of the worker's consumer (Faust fixes it at 1500)
ALERT_BATCH = 200  # anomalies whose alert writes share two Redis round trips
ALERT_BATCH_WAIT = 0.05  # seconds the alert stage waits to fill a batch
_encoder = msgspec.json.Encoder()
_anomaly = msgspec.json.Decoder(Anomaly)


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust credentials for SASL and/or SSL, or None for PLAINTEXT."""
    import ssl

    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_cafile)
        if kafka.ssl_certfile:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_app(settings: Settings, app_id: str, data_dir: str, partitions: int) -> faust.App:
    """A Faust app (consumer group `app_id`) on the configured brokers, with the
    runtime's guard-rails: web server off, in-memory tables, explicit replication,
    partitions and poll size, offsets from the earliest, full acknowledgements."""
    kafka, worker = settings.kafka, settings.worker
    assert kafka.bootstrap_servers, "the Kafka runtime needs bootstrap servers"
    return faust.App(
        app_id,
        broker=[f"kafka://{server.strip()}" for server in kafka.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(kafka),
        store="memory://",
        datadir=data_dir,
        web_enabled=False,
        topic_replication_factor=kafka.replication_factor,
        topic_partitions=partitions,
        broker_max_poll_records=worker.max_poll_records,
        consumer_auto_offset_reset="earliest",
        processing_guarantee="at_least_once",
        stream_wait_empty=False,
        consumer_group_instance_id=worker.instance_id,
        producer_acks=-1,
    )


class KafkaOutput:
    """The detect stage's outputs as Faust topic sends."""

    def __init__(self, app: faust.App, anomalies: faust.TopicT, deadletter: faust.TopicT):
        self.app, self.anomalies, self.deadletters = app, anomalies, deadletter

    async def anomaly(self, key: str, value: bytes) -> None:
        await self.anomalies.send(key=key.encode(), value=value)
        metrics.RECORDS_OUT.labels(topic=self.anomalies.get_topic_name()).inc()

    async def deadletter(self, key: bytes | None, value: bytes) -> None:
        await self.deadletters.send(key=key, value=value)
        metrics.DEADLETTERED.inc()
        metrics.RECORDS_OUT.labels(topic=self.deadletters.get_topic_name()).inc()

    async def flush(self) -> None:
        await self.app.producer.flush()


class KafkaRuntime:
    """Builds the Faust app for one catalog; `start`/`stop` run it in the current loop."""

    def __init__(self, settings: Settings, catalog: Catalog, topics: dict[str, TopicSpec]):
        self.settings = settings
        self.catalog = catalog
        worker = settings.worker
        partitions = settings.kafka.partitions or topics[next(iter(INPUT_TOPICS))].partitions
        self.app = faust_app(settings, worker.app_id, worker.data_dir, partitions)
        name = settings.topic
        self.inputs = {name(topic): self._topic(name(topic), partitions) for topic in INPUT_TOPICS}
        self.anomalies = self._topic(name(ANOMALIES_TOPIC), partitions)
        self.alerts = self._topic(name(ALERTS_TOPIC), None)
        self.deadletters = self._topic(name(DEADLETTER_TOPIC), None)
        self.redis: Any = None
        self.alert_store: RedisAlertStore | None = None
        self.processor: AsyncAlertProcessor | None = None
        self.stage: DetectStage | None = None
        self._committed = asyncio.Event()  # the alert agent committed a transition
        self._silences: list[Silence] = []  # the last read, for when Redis cannot answer
        self._publishing: asyncio.Task[None] | None = None
        self._stopping = False
        self._wire()

    def _topic(self, name: str, partitions: int | None) -> faust.TopicT:
        """A topic of raw bytes: decoding happens in our code, where errors are caught."""
        return self.app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
        )

    async def connect(self) -> None:
        """Create the Redis client and the stages inside the running loop."""
        r = self.settings.redis
        self.alert_store = RedisAlertStore.from_settings(r)
        self.redis = self.alert_store.client
        self.processor = AsyncAlertProcessor(catalog_lookup(self.catalog), self.alert_store)
        self.stage = DetectStage(
            self.catalog,
            RedisSnapshotStore(self.redis, r.key_prefix, self.settings.worker.app_id),
            KafkaOutput(self.app, self.anomalies, self.deadletters),
            {topic: INPUT_TOPICS[_base(topic, self.settings)] for topic in self.inputs},
            ack=lambda event: event.ack(),
            snapshot_every=self.settings.worker.snapshot_every,
            snapshot_interval=self.settings.worker.snapshot_interval,
            on_anomaly=lambda a: metrics.ANOMALIES.labels(kind=a.kind).inc(),
            on_records=lambda topic, n: metrics.INPUT_RECORDS.labels(topic=topic).inc(n),
        )

    def _wire(self) -> None:
        app = self.app
        for topic_name, topic in self.inputs.items():
            app.agent(topic, name=f"detect-{topic_name}", concurrency=1)(self._detect_agent)
        app.agent(self.anomalies, name="alert", concurrency=1)(self._alert_agent)
        app.timer(1.0)(self._snapshot_timer)
        app.timer(self.settings.worker.tick_interval)(self._tick_timer)
        app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]

    async def _detect_agent(self, stream: faust.StreamT[bytes]) -> None:
        async for event in stream.noack().events():  # type: ignore[attr-defined]
            message = event.message
            started = time.perf_counter()
            metrics.RECORDS_IN.labels(topic=message.topic).inc()
            assert self.stage is not None
            await self.stage.handle(
                InputMessage(
                    message.topic, message.partition, message.offset, event.key, event.value
                ),
                event,
            )
            metrics.LATENCY.labels(stage="detect").observe(time.perf_counter() - started)
            metrics.LAST_EVENT.set(time.time())

    async def _alert_agent(self, stream: faust.StreamT[bytes]) -> None:
        """Anomalies in batches (as many as arrived within `ALERT_BATCH_WAIT`): their
        alert writes go to Redis together, and the batch is counted in and acknowledged
        once they have committed. The latency histogram observes batches here."""
        take = stream.take_events  # type: ignore[attr-defined]
        async for events in take(ALERT_BATCH, within=ALERT_BATCH_WAIT):
            started = time.perf_counter()
            assert self.processor is not None and self.alert_store is not None
            silences = await self._current_silences()
            batch: list[tuple[Any, tuple[str, Transition]]] = []
            for event in events:
                try:
                    anomaly = _anomaly.decode(event.value)
                    batch.append((event, self.processor.transition_for(anomaly, silences)))
                except Exception as exc:  # kept as a dead letter, never skipped silently
                    await self._deadletter(event, f"alert stage: {type(exc).__name__}: {exc}")
            if await self._commit_alerts(batch):
                self._committed.set()
            metrics.RECORDS_IN.labels(topic=self.anomalies.get_topic_name()).inc(len(events))
            metrics.LATENCY.labels(stage="alert").observe(time.perf_counter() - started)

    async def _current_silences(self) -> list[Silence]:
        """The silences in Redis, or the last ones read when it cannot answer (the batch's
        commit then fails and says so, and its anomalies become dead letters)."""
        assert self.alert_store is not None
        try:
            self._silences = await self.alert_store.silences()
        except Exception:
            _log.exception("alert stage: silences unreadable; using the last ones read")
        return self._silences

    async def _commit_alerts(self, batch: list[tuple[Any, tuple[str, Transition]]]) -> bool:
        """Apply a batch's transitions; True if any committed an event. If the batch
        fails as a whole, each is applied alone, so only the failing ones become dead
        letters (a transition that did commit is a no-op the second time)."""
        assert self.alert_store is not None
        if not batch:
            return False
        try:
            return bool(await self.alert_store.apply_many([item for _, item in batch]))
        except Exception:
            _log.exception("alert stage: a batch of %d failed; applying one by one", len(batch))
        committed = False
        for event, (fp, transition) in batch:
            try:
                committed |= bool(await self.alert_store.apply(fp, transition))
            except Exception as exc:
                await self._deadletter(event, f"alert stage: {type(exc).__name__}: {exc}")
        return committed

    async def _publisher(self) -> None:
        """Publish transitions as soon as they are committed, in batches under load.

        The alert agent only commits (a round trip or two per batch of anomalies);
        waiting there for the broker's acknowledgement of its transitions would add a
        produce round trip to every batch.
        """
        while not self._stopping:
            await self._committed.wait()
            self._committed.clear()
            await self._publish_transitions()

    async def _publish_transitions(self) -> None:
        """Drain the outbox; a failure leaves it queued for the next drain (the timer's)."""
        try:
            await self._drain_outbox()
        except Exception:
            _log.exception("publishing alert transitions failed; they stay in the outbox")

    async def _drain_outbox(self) -> None:
        """Publish committed alert transitions; they leave the outbox once Kafka has them.

        Drains again only after a full batch: a shorter one emptied the outbox as it
        was, and a transition committed since has woken the publisher again."""
        assert self.alert_store is not None
        drain, limit = self.alert_store.drain_outbox, DEFAULT_DRAIN_LIMIT
        while await drain(self._deliver, limit, published=self._published) >= limit:
            pass

    async def _deliver(self, alerts: list[AlertEvent]) -> None:
        sent = [
            await self.alerts.send(key=a.fingerprint.encode(), value=_encoder.encode(a))
            for a in alerts
        ]
        for future in sent:
            await future  # the broker has acknowledged it
        for alert in alerts:
            metrics.ALERTS.labels(status=alert.status).inc()
            metrics.RECORDS_OUT.labels(topic=self.alerts.get_topic_name()).inc()

    async def _published(self, alerts: list[AlertEvent]) -> set[str]:
        """After a crash mid-publication: which of these transitions the topic has."""
        options = client_options(self.settings)
        return await published_transitions(options, self.alerts.get_topic_name(), alerts)

    async def _deadletter(self, event: Any, reason: str) -> None:
        from datetime import UTC, datetime

        message = event.message
        entry = DeadLetter(
            source=f"{message.topic}[{message.partition}]@{message.offset}",
            reason=reason,
            received_at=datetime.now(UTC),
            raw=event.value or b"",
        )
        await self.deadletters.send(key=message.topic.encode(), value=_encoder.encode(entry))
        metrics.DEADLETTERED.inc()

    async def _snapshot_timer(self) -> None:
        if self.alert_store is not None:
            await self._publish_transitions()  # what a crashed worker committed but never sent
        if self.stage is not None:
            await self.stage.snapshot_due()
            metrics.observe_stage(self.stage)
            self._observe_lag()

    def _observe_lag(self) -> None:
        """Lag = the partition's high-water mark minus the next offset this worker needs."""
        assert self.stage is not None
        consumer = self.app.consumer
        assigned = {tp for tp in consumer.assignment() if tp.topic in self.inputs}
        metrics.PARTITIONS.set(len({tp.partition for tp in assigned}))
        for tp in assigned:
            state = self.stage.partitions.get(tp.partition)
            if state is None:  # nothing consumed yet on this partition
                continue
            done = state.offsets.get(tp.topic, -1) + 1
            try:
                highwater = consumer.highwater(tp)
            except Exception:  # not fetched yet: no figure rather than a wrong one
                continue
            if highwater is not None:
                lag = max(0, highwater - done)
                metrics.LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    async def _tick_timer(self) -> None:
        now = time.time()
        if self.stage is not None:
            await self.stage.tick(now)
        if self.processor is not None and self.alert_store is not None:
            await self.processor.tick(now)
            await self._publish_transitions()
            active = await self.alert_store.active()
            for status in ("pending", "firing"):
                count = sum(1 for a in active if a.status == status)
                metrics.ACTIVE_ALERTS.labels(state=status).set(count)

    async def _on_revoked(self, app: faust.App, revoked: set[TP], **kwargs: Any) -> None:
        if self.stage is not None:
            inputs = set(self.inputs)
            await self.stage.release({tp.partition for tp in revoked if tp.topic in inputs})

    async def start(self) -> None:
        await self.connect()
        await self.app.start()
        shorten_long_poll(self.app, FETCH_MAX_WAIT_MS)
        self._publishing = asyncio.create_task(self._publisher())

    async def _last_drain(self) -> None:
        if self._publishing is not None:
            await self._publishing
        if self.alert_store is not None:
            await self._publish_transitions()

    async def stop(self) -> None:
        if self.stage is not None:
            await self.stage.release(set(self.stage.partitions))
        self._stopping = True
        self._committed.set()
        # Let a drain in progress finish (no half-published batch) and drain once more,
        # but not forever: with the broker gone, a cancelled drain is read back by the
        # next worker, and what is left waits in Redis for it.
        try:
            await asyncio.wait_for(self._last_drain(), STOP_DRAIN_SECONDS)
        except TimeoutError:
            _log.warning("alert outbox not drained within %ss of stopping", STOP_DRAIN_SECONDS)
        await self.app.stop()
        if self.alert_store is not None:
            await self.alert_store.close()


def shorten_long_poll(app: faust.App, wait_ms: int) -> None:
    """Bound how long one fetch may wait on the broker for partitions without data.

    aiokafka keeps one fetch in flight per broker and leaves out of it the partitions
    whose fetched records are not consumed yet. When every busy partition still has
    records, the fetch asks only for quiet ones (the anomalies topic, an idle input
    topic), and the broker holds it for the whole long-poll: once the busy partitions
    drain, the worker idles until it returns. Faust passes no setting for it, so it is
    set on the running consumer (faust-streaming and aiokafka are pinned exactly).
    """
    fetcher = app.consumer._thread._ensure_consumer()._fetcher  # type: ignore[attr-defined]
    if not hasattr(fetcher, "_fetch_max_wait_ms"):
        raise RuntimeError("aiokafka's fetcher has no _fetch_max_wait_ms: check the pins")
    fetcher._fetch_max_wait_ms = wait_ms


def _base(topic: str, settings: Settings) -> str:
    prefix = settings.kafka.topic_prefix
    return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic
