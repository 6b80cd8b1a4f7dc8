"""Where results go in the embedded runtime: JSON-lines files, one object per line."""

from __future__ import annotations

from pathlib import Path
from typing import IO

import msgspec

_encoder = msgspec.json.Encoder()


class JsonlSink:
    """Appends records to a file; flushed by the caller at checkpoints and on stop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: IO[bytes] = path.open("ab")
        self.count = 0

    def write(self, record: msgspec.Struct) -> None:
        self._file.write(_encoder.encode(record) + b"\n")
        self.count += 1

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
