"""The asyncio client: buffers records and sends them from one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import msgspec
from aiokafka import AIOKafkaProducer

from lupus_stream.client.batching import (
    BacklogFullError,
    Batch,
    Batcher,
    LupusSendError,
    SendFailure,
)
from lupus_stream.client.records import (
    TOPIC_OF,
    RecordReporter,
    encoded_size,
)
from lupus_stream.contracts.records import InputRecord
from lupus_stream.runtimes.kafka.admin import client_options
from lupus_stream.settings import Settings, load_settings

log = logging.getLogger(__name__)
DEFAULT_MAX_PENDING: Final = 100_000
MAX_FAILURES_KEPT: Final = 100


def _default_settings() -> Settings:
    path = os.environ.get("LUPUS_SETTINGS")
    return load_settings(Path(path) if path else None)


class AsyncLupusClient(RecordReporter):
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
        self._topics = {cls: self.settings.topic(name) for cls, name in TOPIC_OF.items()}
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

    def _report(self, record: InputRecord) -> None:
        size = encoded_size(record)  # before the state checks: invalid input is a ValueError
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
