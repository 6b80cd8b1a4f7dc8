"""The embedded runtime's JSON-lines outputs stay within a disk budget."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from lupus_stream.runtimes.sinks import JsonlSink


class Item(msgspec.Struct):
    n: int
    pad: str = "x" * 40


def read(path: Path) -> list[int]:
    return [json.loads(line)["n"] for line in path.read_text().splitlines()]


def test_a_full_file_is_rotated_and_the_oldest_dropped(tmp_path: Path) -> None:
    path = tmp_path / "deadletter.jsonl"
    sink = JsonlSink(path, max_bytes=200, keep=2)  # 3 lines of 57 bytes a file
    for n in range(10):
        sink.write(Item(n))
    sink.close()
    assert read(path) == [9]
    assert read(tmp_path / "deadletter.jsonl.1") == [6, 7, 8]
    assert read(tmp_path / "deadletter.jsonl.2") == [3, 4, 5]
    assert not (tmp_path / "deadletter.jsonl.3").exists()  # 0, 1, 2 dropped
    assert sink.count == 10


def test_reopening_counts_what_the_file_holds(tmp_path: Path) -> None:
    path = tmp_path / "alerts.jsonl"
    first = JsonlSink(path, max_bytes=200, keep=1)
    first.write(Item(0))
    first.write(Item(1))
    first.close()
    again = JsonlSink(path, max_bytes=200, keep=1)
    again.write(Item(2))
    again.write(Item(3))  # would pass 200 bytes: rotates first
    again.close()
    assert read(path) == [3]
    assert read(tmp_path / "alerts.jsonl.1") == [0, 1, 2]


def test_a_record_larger_than_the_budget_is_still_written(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    sink = JsonlSink(path, max_bytes=10, keep=1)
    sink.write(Item(0))
    sink.write(Item(1))
    sink.close()
    assert read(path) == [1] and read(tmp_path / "x.jsonl.1") == [0]


def test_a_budget_must_hold_something(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        JsonlSink(tmp_path / "x.jsonl", max_bytes=0)


def test_a_file_removed_meanwhile_does_not_stop_the_writes(tmp_path: Path) -> None:
    path = tmp_path / "deadletter.jsonl"
    sink = JsonlSink(path, max_bytes=200, keep=2)
    for n in range(4):
        sink.write(Item(n))  # the fourth rotates: .1 holds 0..2
    (tmp_path / "deadletter.jsonl.1").unlink()
    path.unlink()  # e.g. by hand, to free space
    for n in range(4, 12):
        sink.write(Item(n))
    sink.close()
    # 3 to 5 went to the removed file; the next rotation starts a new one
    assert read(path) == [9, 10, 11]
    assert read(tmp_path / "deadletter.jsonl.1") == [6, 7, 8]
    assert not (tmp_path / "deadletter.jsonl.2").exists()


def test_a_rotation_that_cannot_move_the_file_waits_another_budget(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    (tmp_path / "x.jsonl.1").mkdir()  # in the way of the first rotation
    sink = JsonlSink(path, max_bytes=200, keep=1)
    for n in range(8):
        sink.write(Item(n))
    sink.close()
    assert read(path) == list(range(8))  # nothing lost, one file over budget
    (tmp_path / "x.jsonl.1").rmdir()
    again = JsonlSink(path, max_bytes=200, keep=1)
    again.write(Item(8))
    again.close()
    assert read(path) == [8] and read(tmp_path / "x.jsonl.1") == list(range(8))
