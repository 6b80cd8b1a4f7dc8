"""Engine snapshots and input offsets of the embedded runtime, in its SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lupus_stream.detection.base import StateError


class CheckpointStore:
    """Named blobs (engine state, per-file byte offsets) next to the alert state."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS checkpoints (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
        )

    def get(self, name: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM checkpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        if not isinstance(row[0], bytes):
            raise StateError(f"checkpoint {name!r} holds {type(row[0]).__name__}, not bytes")
        return row[0]

    def put_many(self, items: dict[str, bytes]) -> None:
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO checkpoints (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                list(items.items()),
            )

    def offsets(self) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT name, value FROM checkpoints WHERE name LIKE 'offset:%'"
        ).fetchall()
        offsets = {}
        for name, value in rows:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else None
            if text is None or not text.isdigit():
                raise StateError(f"checkpoint {name!r} is not a byte offset: {value!r}")
            offsets[name[len("offset:") :]] = int(text)
        return offsets

    def close(self) -> None:
        self._db.close()
