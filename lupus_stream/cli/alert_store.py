"""The alert store a command works on: Redis when a broker is configured (the Kafka
runtime's), the embedded runtime's state file otherwise. Opened per call, so a command
that runs for long holds no connection or file between its rounds."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lupus_stream.alerting.lifecycle import AlertState
from lupus_stream.alerting.silences import Silence
from lupus_stream.settings import Settings


class StoreError(RuntimeError):
    """The store could not be read or written (Redis down, a locked or damaged file)."""


class AlertStoreAccess:
    def __init__(self, settings: Settings, data_dir: Path) -> None:
        self.settings, self.data_dir = settings, data_dir

    @property
    def on_redis(self) -> bool:
        return bool(self.settings.kafka.bootstrap_servers)

    @property
    def where(self) -> str:
        if self.on_redis:
            url = urlsplit(self.settings.redis.url)
            shown = url._replace(netloc=url.netloc.rpartition("@")[2]).geturl()  # no password
            return f"Redis {shown} (prefix {self.settings.redis.key_prefix})"
        return str(self._db)

    @property
    def identity(self) -> str:
        """Names this store among those that may share one Alertmanager."""
        if self.on_redis:
            url = urlsplit(self.settings.redis.url)
            return f"{url.netloc.rpartition('@')[2]}{url.path} {self.settings.redis.key_prefix}"
        return f"{socket.gethostname()}:{self._db.resolve()}"

    @property
    def _db(self) -> Path:
        from lupus_stream.runtimes.pipeline import DB_FILE

        return self.data_dir / DB_FILE

    @contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            raise StoreError(f"cannot {doing} {self.where}: {type(exc).__name__}: {exc}") from exc

    @asynccontextmanager
    async def _redis(self) -> AsyncIterator[Any]:
        from lupus_stream.alerting.redis_store import RedisAlertStore

        store = RedisAlertStore.from_settings(self.settings.redis)
        try:
            yield store
        finally:
            await store.close()

    def _sqlite(self, create: bool = False) -> Any:
        from lupus_stream.alerting.sqlite_store import SqliteAlertStore

        if not self._db.exists():
            if not create:
                return None
            self.data_dir.mkdir(parents=True, exist_ok=True)
        return SqliteAlertStore(self._db)

    async def _call(
        self, doing: str, method: str, *args: Any, missing: Any = None, create: bool = False
    ) -> Any:
        """`method` of the store (the Redis and the SQLite store name them alike); `missing`
        when the embedded state file does not exist yet (`create`: make it)."""
        with self._failing(doing):
            if self.on_redis:
                async with self._redis() as store:
                    return await getattr(store, method)(*args)
            store = self._sqlite(create)
            if store is None:
                return missing
            try:
                return getattr(store, method)(*args)
            finally:
                store.close()

    async def active(self) -> list[AlertState]:
        return list(await self._call("read the alerts in", "active", missing=[]))

    async def get(self, fp: str) -> AlertState | None:
        state: AlertState | None = await self._call("read an alert in", "get", fp)
        return state

    async def silences(self) -> list[Silence]:
        return list(await self._call("read the silences in", "silences", missing=[]))

    async def put_silence(self, silence: Silence) -> None:
        await self._call("write a silence to", "put_silence", silence, create=True)
