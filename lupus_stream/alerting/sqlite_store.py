"""Alert states in one SQLite file, for the embedded runtime.

States are msgspec JSON blobs; `status` is a column so `active()` need not decode the
resolved/inactive rows. WAL lets readers (CLI, dashboards) look while the runtime writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from os import PathLike

import msgspec

from lupus_stream.alerting.lifecycle import AlertState
from lupus_stream.alerting.silences import Silence, decode_silences

_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(AlertState)
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alerts "
    "(fingerprint TEXT PRIMARY KEY, status TEXT NOT NULL, state BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS alerts_status ON alerts (status)",
    "CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, silence BLOB NOT NULL)",
)
_UPSERT = (
    "INSERT INTO alerts (fingerprint, status, state) VALUES (?, ?, ?) "
    "ON CONFLICT (fingerprint) DO UPDATE SET status = excluded.status, state = excluded.state"
)


class SqliteAlertStore:
    """`AlertStore` on stdlib sqlite3; writes autocommit unless inside `transaction()`."""

    def __init__(self, path: str | PathLike[str]) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            self._conn.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one commit (nested use joins the outer transaction)."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def get(self, fp: str) -> AlertState | None:
        row = self._conn.execute("SELECT state FROM alerts WHERE fingerprint = ?", (fp,)).fetchone()
        return None if row is None else _DECODER.decode(row[0])

    def put(self, state: AlertState) -> None:
        self.put_many([state])

    def put_many(self, states: Iterable[AlertState]) -> None:
        """Write several states in one transaction."""
        rows = [(s.fingerprint, s.status, _ENCODER.encode(s)) for s in states]
        with self.transaction():
            self._conn.executemany(_UPSERT, rows)

    def active(self) -> list[AlertState]:
        rows = self._conn.execute(
            "SELECT state FROM alerts WHERE status IN ('pending', 'firing') ORDER BY fingerprint"
        )
        return [_DECODER.decode(row[0]) for row in rows]

    def put_silence(self, silence: Silence) -> None:
        """Insert or replace a silence (expiring one is replacing it with an earlier end)."""
        with self.transaction():
            self._conn.execute(
                "INSERT INTO silences (id, silence) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET silence = excluded.silence",
                (silence.id, _ENCODER.encode(silence)),
            )

    def silences(self) -> list[Silence]:
        """Every silence, expired ones too, by start time."""
        return decode_silences(self._conn.execute("SELECT id, silence FROM silences"))

    def close(self) -> None:
        self._conn.close()
