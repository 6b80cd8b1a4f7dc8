"""The thread-safe client: an asyncio client run on its own event loop in a thread."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Self, TypeVar

from lupus_stream.client.async_client import DEFAULT_MAX_PENDING, AsyncLupusClient
from lupus_stream.client.batching import LupusSendError
from lupus_stream.client.records import (
    RecordReporter,
    encoded_size,
)
from lupus_stream.contracts.records import InputRecord
from lupus_stream.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


class LupusClient(RecordReporter):
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
        size = encoded_size(record)
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
