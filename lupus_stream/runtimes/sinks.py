"""Where results go in the embedded runtime: JSON-lines files, one object per line.

A file that would grow past `max_bytes` is rotated first (`x.jsonl` -> `x.jsonl.1` ->
... -> `x.jsonl.<keep>`, the oldest dropped), as a topic's retention bounds the Kafka
runtime's outputs: a flood of bad input must not fill the disk and stop the runtime.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO

import msgspec

MAX_BYTES = 100 * 1024 * 1024  # per file
KEEP = 5  # rotated files kept besides the current one

_encoder = msgspec.json.Encoder()


class JsonlSink:
    """Appends records to a file; flushed by the caller at checkpoints and on stop."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        if max_bytes < 1 or keep < 1:
            raise ValueError("max_bytes and keep must be at least 1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self._file: IO[bytes] = path.open("ab")
        self._size = self._file.tell()
        self.count = 0

    def write(self, record: msgspec.Struct) -> None:
        line = _encoder.encode(record) + b"\n"
        if self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._file.write(line)
        self._size += len(line)
        self.count += 1

    def _rotate(self) -> None:
        """Shift the files by one (one removed or renamed meanwhile is skipped). If that
        or opening the new file fails, writing goes on where it was, and the next try
        waits for another `max_bytes`."""
        with contextlib.suppress(OSError):
            for i in range(self.keep, 0, -1):
                newer = self.path.with_name(f"{self.path.name}.{i - 1}") if i > 1 else self.path
                with contextlib.suppress(FileNotFoundError):
                    os.replace(newer, self.path.with_name(f"{self.path.name}.{i}"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            opened = self.path.open("ab")
        except OSError:
            self._size = 0
            return
        if os.fstat(opened.fileno()).st_ino == os.fstat(self._file.fileno()).st_ino:
            opened.close()  # the current file could not be moved aside
            self._size = 0
            return
        self._file.close()
        self._file = opened
        self._size = opened.tell()

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()
