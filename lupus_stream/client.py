"""Producer SDK: publish metrics, predictions, labels and landed sources to lupus-stream.

Records are validated when they are reported (the same contract the workers decode with),
buffered per (topic, signal key) and sent as one JSON-list message per buffer, keyed by the
signal key so that every record of a series lands on the partition that owns it. A buffer
is sent when it holds `max_batch` records, `linger` seconds after its first record, on
`flush()` and when the client stops. Errors of the sends are raised by the next `flush()`
(or `stop()` / `close()`) as a `LupusSendError`.

In an asyncio service::

    from lupus_stream.client import AsyncLupusClient

    async with AsyncLupusClient(bootstrap_servers="broker:9092") as lupus:
        lupus.report_metric("shop", "orders", 42.0, labels={"region": "eu"})
        lupus.log_prediction("shop", "ranker", "v7", request_id, {"price": 9.5}, 0.83)
        await lupus.flush()  # optional: wait for the broker, raise send errors

In a batch job or a threaded service (the client runs its own event loop in a thread)::

    from lupus_stream.client import LupusClient

    with LupusClient() as lupus:  # settings from LUPUS_KAFKA_* (and LUPUS_SETTINGS)
        for row in rows:
            lupus.log_label("shop", "ranker", row.request_id, row.clicked)
        lupus.report_source_landed("shop", "orders_table", "2026-03-02", row_count=len(rows))

`report_*` / `log_*` validate (raising `ValueError`) and buffer; they do not wait for the
broker unless `max_pending` records are already waiting (then `LupusClient` blocks and
`AsyncLupusClient` raises `BacklogFullError`). `AsyncLupusClient` belongs to the event loop
that started it and is not thread-safe; `LupusClient` may be shared by any number of threads.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import math
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

import msgspec
from aiokafka import AIOKafkaProducer

from lupus_stream.contracts.decode import MAX_MESSAGE_BYTES, encode_records
from lupus_stream.contracts.names import NAME_RULE, bad_name
from lupus_stream.contracts.records import (
    InputRecord,
    Label,
    MetricPoint,
    PredictionLog,
    SourceLanded,
)
from lupus_stream.contracts.topics import (
    LABELS_TOPIC,
    METRICS_TOPIC,
    PREDICTIONS_TOPIC,
    SOURCES_TOPIC,
)
from lupus_stream.runtimes.kafka.admin import client_options
from lupus_stream.runtimes.kafka.send import signal_key
from lupus_stream.settings import Settings, load_settings

__all__ = [
    "AsyncLupusClient",
    "BacklogFullError",
    "Batch",
    "Batcher",
    "LupusClient",
    "LupusSendError",
    "SendFailure",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R", bound=msgspec.Struct)

# Bytes of one message value. The decoder and the topics (max.message.bytes) accept up to
# MAX_MESSAGE_BYTES per record *batch*, which also holds the key and ~100 bytes of framing.
MAX_BATCH_BYTES: Final = MAX_MESSAGE_BYTES - 16 * 1024
DEFAULT_MAX_PENDING: Final = 100_000
MAX_FAILURES_KEPT: Final = 100

_TOPIC_OF: Final[dict[type[msgspec.Struct], str]] = {
    MetricPoint: METRICS_TOPIC,
    PredictionLog: PREDICTIONS_TOPIC,
    Label: LABELS_TOPIC,
    SourceLanded: SOURCES_TOPIC,
}
_KIND_OF: Final[dict[type[msgspec.Struct], str]] = {
    MetricPoint: "metric",
    PredictionLog: "prediction",
    Label: "label",
    SourceLanded: "source",
}
_ERROR_AT = re.compile(r"^(?P<rule>.*?) - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$", re.S)


# --------------------------------------------------------------------------------------------
# Validation: plain arguments -> a record the workers will accept


def _plain(value: Any) -> Any:
    """NumPy scalars (pandas cells) as the Python values msgspec accepts."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _finite(field_name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"field {field_name}: {value!r} is not a finite number "
            "(JSON has no NaN or infinity; it would be sent as null)"
        )


def _timestamp(field_name: str, value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"field {field_name}: naive datetime {value.isoformat()}: the contract requires "
                "a timezone, e.g. datetime.now(UTC) or value.replace(tzinfo=UTC)"
            )
        if type(value) is not datetime:  # pandas.Timestamp and other subclasses
            value = datetime(
                value.year, value.month, value.day, value.hour, value.minute,
                value.second, value.microsecond, value.tzinfo, fold=value.fold,
            )  # fmt: skip
    return value


def _mapping(field_name: str, value: Mapping[str, Any] | None) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"field {field_name}: expected a mapping, got {type(value).__name__}")
    out = {_plain(k): _plain(v) for k, v in value.items()}
    for k, v in out.items():
        _finite(f"{field_name}[{k!r}]", v)
    return out


def _convert(cls: type[R], fields: dict[str, Any]) -> R:
    try:
        record = msgspec.convert(fields, type=cls)
    except msgspec.ValidationError as exc:
        kind = _KIND_OF[cls]
        match = _ERROR_AT.match(str(exc))
        if match is None:
            raise ValueError(f"invalid {kind} record: {exc}") from None
        path = match.group("path") or "?"
        if match.group("key"):
            path += "[key]"
        got = f" (got {fields[path]!r:.80})" if path in fields else ""
        raise ValueError(
            f"invalid {kind} record: field {path}: {match.group('rule')}{got}"
        ) from None
    path = bad_name(record)
    if path is not None:
        got = f" (got {fields[path]!r:.80})" if path in fields else ""
        raise ValueError(f"invalid {_KIND_OF[cls]} record: field {path}: {NAME_RULE}{got}")
    return record


def _metric(
    product: str,
    name: str,
    value: float | None,
    ts: datetime | None,
    labels: Mapping[str, str] | None,
) -> MetricPoint:
    value = _plain(value)
    _finite("value", value)
    return _convert(
        MetricPoint,
        {
            "product": product,
            "name": name,
            "ts": _timestamp("ts", ts),
            "value": value,
            "labels": _mapping("labels", labels),
        },
    )


def _prediction(
    product: str,
    model: str,
    model_version: str,
    request_id: str,
    features: Mapping[str, float | str | bool | None] | None,
    prediction: float | str | bool | Sequence[str],
    ts: datetime | None,
    segment: Mapping[str, str] | None,
) -> PredictionLog:
    prediction = _plain(prediction)
    if isinstance(prediction, tuple | list):
        prediction = [_plain(p) for p in prediction]
    _finite("prediction", prediction)
    return _convert(
        PredictionLog,
        {
            "product": product,
            "model": model,
            "model_version": model_version,
            "request_id": request_id,
            "ts": _timestamp("ts", ts),
            "features": _mapping("features", features),
            "prediction": prediction,
            "segment": _mapping("segment", segment),
        },
    )


def _label(
    product: str, model: str, request_id: str, label: float | str | bool, ts: datetime | None
) -> Label:
    label = _plain(label)
    _finite("label", label)
    return _convert(
        Label,
        {
            "product": product,
            "model": model,
            "request_id": request_id,
            "ts": _timestamp("ts", ts),
            "label": label,
        },
    )


def _source(
    product: str, source: str, partition: str, row_count: int, landed_at: datetime | None
) -> SourceLanded:
    return _convert(
        SourceLanded,
        {
            "product": product,
            "source": source,
            "partition": partition,
            "row_count": _plain(row_count),
            "landed_at": _timestamp("landed_at", landed_at),
        },
    )


def _size(record: InputRecord, max_bytes: int = MAX_BATCH_BYTES) -> int:
    """Encoded size of one record; a record that cannot fit in any message is rejected."""
    size = len(msgspec.json.encode(record))
    if size + 2 > max_bytes:
        raise ValueError(
            f"invalid {_KIND_OF[type(record)]} record: {size} bytes encoded, "
            f"more than a message may hold ({max_bytes - 2})"
        )
    return size


# --------------------------------------------------------------------------------------------
# Batching (pure: no Kafka, no clock of its own)


@dataclass(frozen=True, slots=True)
class Batch:
    """Records of one signal key bound for one topic: one Kafka message."""

    topic: str
    key: str
    records: tuple[InputRecord, ...]

    def encode(self) -> bytes:
        return encode_records(self.records)


@dataclass(slots=True)
class _Buffer:
    started: float
    records: list[InputRecord] = field(default_factory=list)
    size: int = 2  # bytes of the JSON list: "[" + records joined by "," + "]"


class Batcher:
    """Buffers records per (topic, signal key) and says which buffers are ready to send.

    `now` is any monotonic clock in seconds (the client passes `loop.time()`). A buffer is
    ready when it holds `max_batch` records, when the next record would make its message
    larger than `max_bytes`, or (`due`) `linger` seconds after its first record.
    """

    def __init__(
        self, max_batch: int = 500, linger: float = 0.05, max_bytes: int = MAX_BATCH_BYTES
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not linger >= 0 or math.isinf(linger):
            raise ValueError(f"linger must be a finite number of seconds >= 0, got {linger}")
        self.max_batch, self.linger, self.max_bytes = max_batch, linger, max_bytes
        # Oldest first: a new buffer always starts later than every existing one.
        self._buffers: OrderedDict[tuple[str, str], _Buffer] = OrderedDict()
        self._count = 0

    def __len__(self) -> int:
        """Records buffered."""
        return self._count

    def add(
        self, topic: str, record: InputRecord, now: float, size: int | None = None
    ) -> list[Batch]:
        """Buffer one record; returns the batches that became ready (at most two)."""
        if size is None:
            size = _size(record, self.max_bytes)
        slot = (topic, signal_key(record))
        ready: list[Batch] = []
        buffer = self._buffers.get(slot)
        if buffer is not None and buffer.size + 1 + size > self.max_bytes:
            ready.append(self._pop(slot))
            buffer = None
        if buffer is None:
            buffer = self._buffers[slot] = _Buffer(now)
            buffer.size += size
        else:
            buffer.size += 1 + size
        buffer.records.append(record)
        self._count += 1
        if len(buffer.records) >= self.max_batch:
            ready.append(self._pop(slot))
        return ready

    def next_deadline(self) -> float | None:
        """When the oldest buffer is due, or None when nothing is buffered."""
        for buffer in self._buffers.values():
            return buffer.started + self.linger
        return None

    def due(self, now: float) -> list[Batch]:
        """Take the buffers whose linger has passed, oldest first."""
        ready: list[Batch] = []
        while self._buffers:
            slot, buffer = next(iter(self._buffers.items()))
            if buffer.started + self.linger > now:
                break
            ready.append(self._pop(slot))
        return ready

    def drain(self) -> list[Batch]:
        """Take every buffer, oldest first."""
        ready = [self._pop(slot) for slot in list(self._buffers)]
        return ready

    def _pop(self, slot: tuple[str, str]) -> Batch:
        buffer = self._buffers.pop(slot)
        self._count -= len(buffer.records)
        return Batch(slot[0], slot[1], tuple(buffer.records))


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class SendFailure:
    """One message the broker did not take."""

    topic: str
    key: str
    records: int
    error: BaseException

    def describe(self) -> str:
        error = f"{type(self.error).__name__}: {self.error}".rstrip(": ")
        return f"{self.topic} key {self.key!r} ({self.records} records): {error}"


class LupusSendError(Exception):
    """Messages failed since the last flush.

    `messages` and `records` count all of them; `failures` details the first
    `MAX_FAILURES_KEPT` (a long broker outage must not fill the memory with errors).
    """

    def __init__(self, failures: list[SendFailure], messages: int, records: int) -> None:
        self.failures, self.messages, self.records = failures, messages, records
        more = f" (and {messages - 1} more)" if messages > 1 else ""
        super().__init__(
            f"{messages} messages ({records} records) were not sent: {failures[0].describe()}{more}"
        )


class BacklogFullError(RuntimeError):
    """More records are waiting for the broker than `max_pending` allows."""


# --------------------------------------------------------------------------------------------
# The asyncio client


def _default_settings() -> Settings:
    path = os.environ.get("LUPUS_SETTINGS")
    return load_settings(Path(path) if path else None)


class AsyncLupusClient:
    """Publishes records to the input topics from one asyncio event loop.

    `settings` defaults to the `LUPUS_*` environment (and the `LUPUS_SETTINGS` file, like
    the CLI); `bootstrap_servers` and `topic_prefix` override it. At most `max_pending`
    records may wait for the broker; beyond that `report_*` raises `BacklogFullError`
    (await `flush()` to wait for room).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        max_batch: int = 500,
        linger: float = 0.05,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        settings = settings if settings is not None else _default_settings()
        kafka = settings.kafka
        if bootstrap_servers is not None:
            kafka = msgspec.structs.replace(kafka, bootstrap_servers=bootstrap_servers)
        if topic_prefix is not None:
            kafka = msgspec.structs.replace(kafka, topic_prefix=topic_prefix)
        self.settings = msgspec.structs.replace(settings, kafka=kafka)
        if not kafka.bootstrap_servers:
            raise ValueError(
                "no Kafka broker: pass bootstrap_servers= or set LUPUS_KAFKA_BOOTSTRAP_SERVERS"
            )
        if max_pending < max_batch:
            raise ValueError(f"max_pending ({max_pending}) must be >= max_batch ({max_batch})")
        self.max_pending = max_pending
        self._batcher = Batcher(max_batch, linger)
        self._topics = {cls: self.settings.topic(name) for cls, name in _TOPIC_OF.items()}
        self._producer: Any = None
        self._generation = 0  # of the producer; a failed delivery asks for a new one
        self._renew = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Batch] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._inflight: set[asyncio.Future[Any]] = set()
        self._failures: list[SendFailure] = []
        self._failed_messages = self._failed_records = 0
        self._pending = 0
        self._closed = False

    @property
    def pending(self) -> int:
        """Records reported but not yet acknowledged (or failed)."""
        return self._pending

    def topic(self, record_type: type[InputRecord]) -> str:
        """The (prefixed) topic a record type is published to."""
        return self._topics[record_type]

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._closed:
            raise RuntimeError("this client was stopped; create a new one")
        if self._loop is not None:
            return
        self._producer = await self._new_producer()
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="lupus-client-send"),
            asyncio.create_task(self._linger_loop(), name="lupus-client-linger"),
        ]

    async def stop(self) -> None:
        """Send everything buffered, wait for the broker and close; raises `LupusSendError`."""
        if self._loop is None or self._closed:
            self._closed = True
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._producer is not None:
                await self._producer.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.stop()
            return
        try:  # do not hide the exception that ended the block
            await self.stop()
        except LupusSendError as send_error:
            log.error("lupus client stopped with unsent records: %s", send_error)

    async def flush(self) -> None:
        """Send every buffer now and wait until the broker took (or refused) all of them."""
        queue = self._started()
        for batch in self._batcher.drain():
            queue.put_nowait(batch)
        await queue.join()
        while self._inflight:
            await asyncio.wait(set(self._inflight))
        if self._failed_messages:
            error = LupusSendError(self._failures, self._failed_messages, self._failed_records)
            self._failures, self._failed_messages, self._failed_records = [], 0, 0
            raise error

    # -- records -----------------------------------------------------------------------------

    def report_metric(
        self,
        product: str,
        name: str,
        value: float | None,
        ts: datetime | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """One point of the series `product/name`; `value=None` marks a known gap."""
        self._report(_metric(product, name, value, ts, labels))

    def log_prediction(
        self,
        product: str,
        model: str,
        model_version: str,
        request_id: str,
        features: Mapping[str, float | str | bool | None] | None,
        prediction: float | str | bool | Sequence[str],
        ts: datetime | None = None,
        segment: Mapping[str, str] | None = None,
    ) -> None:
        """One served prediction with the features it was made from."""
        self._report(
            _prediction(
                product, model, model_version, request_id, features, prediction, ts, segment
            )
        )

    def log_label(
        self,
        product: str,
        model: str,
        request_id: str,
        label: float | str | bool,
        ts: datetime | None = None,
    ) -> None:
        """Ground truth for the prediction `request_id` of `model`."""
        self._report(_label(product, model, request_id, label, ts))

    def report_source_landed(
        self,
        product: str,
        source: str,
        partition: str,
        row_count: int,
        landed_at: datetime | None = None,
    ) -> None:
        """A partition of an upstream data source has landed."""
        self._report(_source(product, source, partition, row_count, landed_at))

    def _report(self, record: InputRecord) -> None:
        size = _size(record)  # before the state checks: invalid input is a ValueError
        self._started()
        if self._pending >= self.max_pending:
            raise BacklogFullError(
                f"{self._pending} records wait for the broker (max_pending={self.max_pending}); "
                "await flush() before reporting more"
            )
        self._add(record, size)

    # -- internals (all on the event loop's thread) -----------------------------------------

    def _started(self) -> asyncio.Queue[Batch]:
        if self._closed:
            raise RuntimeError("the lupus client is stopped")
        if self._queue is None:
            raise RuntimeError("the lupus client is not started: await start() or `async with`")
        return self._queue

    def _add(self, record: InputRecord, size: int) -> None:
        assert self._loop is not None and self._queue is not None
        self._pending += 1
        topic = self._topics[type(record)]
        for batch in self._batcher.add(topic, record, self._loop.time(), size):
            self._queue.put_nowait(batch)
        self._wake.set()

    async def _wait_for_room(self) -> None:
        while self._pending >= self.max_pending:
            self._room.clear()
            await self._room.wait()

    async def _linger_loop(self) -> None:
        assert self._loop is not None and self._queue is not None
        while True:
            self._wake.clear()
            deadline = self._batcher.next_deadline()
            if deadline is None:
                await self._wake.wait()
                continue
            delay = deadline - self._loop.time()
            if delay > 0:
                # New buffers are due after this one: nothing can need an earlier wake-up.
                await asyncio.sleep(delay)
            for batch in self._batcher.due(self._loop.time()):
                self._queue.put_nowait(batch)

    async def _new_producer(self) -> Any:
        producer = AIOKafkaProducer(
            **client_options(self.settings), acks="all", enable_idempotence=True
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _renew_producer(self) -> None:
        """Replace the producer after a failed delivery.

        aiokafka's idempotent producer does not resynchronise its sequence numbers when the
        broker refuses a batch (aio-libs/aiokafka#1017): every later send to that partition
        fails with OutOfOrderSequenceNumber. A new producer gets a new producer id.
        """
        old, self._producer = self._producer, None
        self._generation += 1
        if old is not None:
            try:
                await old.stop()  # settles its in-flight deliveries
            except Exception as exc:
                log.warning("lupus client: stopping the failed producer: %r", exc)
        self._renew = True  # until the new one has started
        self._producer = await self._new_producer()
        self._renew = False

    async def _send_loop(self) -> None:
        """The only caller of producer.send: messages of a key keep their order."""
        assert self._queue is not None
        while True:
            batch = await self._queue.get()
            try:
                if self._renew:
                    await self._renew_producer()
                delivery = await self._producer.send(
                    batch.topic, batch.encode(), key=batch.key.encode()
                )
            except Exception as exc:
                self._done(batch, exc)
            else:
                self._inflight.add(delivery)
                delivery.add_done_callback(partial(self._delivered, batch, self._generation))
            finally:
                self._queue.task_done()

    def _delivered(self, batch: Batch, generation: int, delivery: asyncio.Future[Any]) -> None:
        self._inflight.discard(delivery)
        error = (
            asyncio.CancelledError("delivery cancelled")
            if delivery.cancelled()
            else delivery.exception()
        )
        if error is not None and generation == self._generation:
            self._renew = True
        self._done(batch, error)

    def _done(self, batch: Batch, error: BaseException | None) -> None:
        self._pending -= len(batch.records)
        if self._pending < self.max_pending:
            self._room.set()
        if error is not None:
            failure = SendFailure(batch.topic, batch.key, len(batch.records), error)
            if not self._failed_messages:  # once per flush: an outage must not flood the log
                log.warning("lupus client: not sent: %s", failure.describe())
            self._failed_messages += 1
            self._failed_records += failure.records
            if len(self._failures) < MAX_FAILURES_KEPT:
                self._failures.append(failure)


# --------------------------------------------------------------------------------------------
# The synchronous client


class LupusClient:
    """The blocking twin of `AsyncLupusClient`, safe to share between threads.

    It connects in the constructor and runs an event loop in a daemon thread. Records are
    validated in the calling thread; when `max_pending` records wait for the broker, the
    `report_*` calls block until there is room. Buffered records are sent at `close()`
    (also registered with `atexit`, in case a batch job forgets it).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        bootstrap_servers: str | None = None,
        topic_prefix: str | None = None,
        max_batch: int = 500,
        linger: float = 0.05,
        max_pending: int = DEFAULT_MAX_PENDING,
        connect_timeout: float | None = 120.0,
    ) -> None:
        self._client = AsyncLupusClient(
            settings,
            bootstrap_servers=bootstrap_servers,
            topic_prefix=topic_prefix,
            max_batch=max_batch,
            linger=linger,
            max_pending=max_pending,
        )
        self._lock = threading.Lock()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="lupus-client", daemon=True)
        self._thread.start()
        try:
            self._call(self._client.start(), connect_timeout)
        except BaseException:
            self._closed = True
            self._end_loop()
            raise
        atexit.register(self.close)

    @property
    def settings(self) -> Settings:
        return self._client.settings

    @property
    def pending(self) -> int:
        """Records reported but not yet acknowledged (or failed); approximate across threads."""
        return self._client.pending

    def topic(self, record_type: type[InputRecord]) -> str:
        return self._client.topic(record_type)

    def report_metric(
        self,
        product: str,
        name: str,
        value: float | None,
        ts: datetime | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """One point of the series `product/name`; `value=None` marks a known gap."""
        self._report(_metric(product, name, value, ts, labels))

    def log_prediction(
        self,
        product: str,
        model: str,
        model_version: str,
        request_id: str,
        features: Mapping[str, float | str | bool | None] | None,
        prediction: float | str | bool | Sequence[str],
        ts: datetime | None = None,
        segment: Mapping[str, str] | None = None,
    ) -> None:
        """One served prediction with the features it was made from."""
        self._report(
            _prediction(
                product, model, model_version, request_id, features, prediction, ts, segment
            )
        )

    def log_label(
        self,
        product: str,
        model: str,
        request_id: str,
        label: float | str | bool,
        ts: datetime | None = None,
    ) -> None:
        """Ground truth for the prediction `request_id` of `model`."""
        self._report(_label(product, model, request_id, label, ts))

    def report_source_landed(
        self,
        product: str,
        source: str,
        partition: str,
        row_count: int,
        landed_at: datetime | None = None,
    ) -> None:
        """A partition of an upstream data source has landed."""
        self._report(_source(product, source, partition, row_count, landed_at))

    def flush(self, timeout: float | None = None) -> None:
        """Send every buffer and block until the broker took them; raises `LupusSendError`."""
        self._check_open()
        self._call(self._client.flush(), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, stop the producer and the loop thread; raises `LupusSendError`. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        try:
            self._call(self._client.stop(), timeout)
        finally:
            self._end_loop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:  # do not hide the exception that ended the block
            self.close()
        except LupusSendError as send_error:
            log.error("lupus client closed with unsent records: %s", send_error)

    # -- internals ---------------------------------------------------------------------------

    def _report(self, record: InputRecord) -> None:
        size = _size(record)
        self._check_open()
        if self._client.pending >= self._client.max_pending:
            self._call(self._client._wait_for_room(), None)
        with self._lock:  # close() cannot slip in between the check and the hand-over
            self._check_open()
            self._loop.call_soon_threadsafe(self._client._add, record, size)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the lupus client is closed")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LupusClient cannot be called from its own event loop thread")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def _end_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
