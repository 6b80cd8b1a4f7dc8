"""Run one detector over a historical series, through the streaming engine.

Each CSV row (`timestamp,value`, empty value = missing) becomes a metric record of a
one-monitor catalog, fed in time order, so what a user sees here is what the monitor
would have said live. Naive timestamps are read as UTC.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from lupus_stream.contracts import MetricPoint
from lupus_stream.contracts.records import EARLIEST, LATEST, MAX_MAGNITUDE, TIME_RULE
from lupus_stream.detection import registry
from lupus_stream.detection.base import Verdict
from lupus_stream.engine import Engine
from lupus_stream.engine.series import Series
from lupus_stream.monitors import Catalog, Monitor, ProductSpec

PRODUCT = "backtest"


@dataclass
class Row:
    line: int
    timestamp: str
    value: str
    t: float | None = None
    x: float | None = None
    score: float = 0.0
    changepoint: int = 0
    expected: float | None = None  # the detector's expectation and band, where it has one
    lower: float | None = None
    upper: float | None = None


@dataclass
class Result:
    rows: list[Row]
    errors: list[str] = field(default_factory=list)
    anomalies: int = 0


def one_monitor_catalog(kind: str | None, params: Mapping[str, Any]) -> Catalog:
    detector: dict[str, Any] = dict(params)
    if kind is not None:
        detector["kind"] = kind
    monitor = msgspec.convert(
        {"name": "series", "signal": {"kind": "metric", "name": "value"}, "detector": detector},
        type=Monitor,
    )
    monitor = msgspec.structs.replace(monitor, product=PRODUCT)
    registry.validate(monitor.detector_kind, monitor.detector_params, "series")
    spec = ProductSpec(product=PRODUCT, owner="backtest", receiver="none", monitors=[monitor])
    return Catalog(products={PRODUCT: spec})


def _parse_time(text: str) -> float:
    ts = datetime.fromisoformat(text.strip())
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    if not EARLIEST <= ts < LATEST:  # the input contracts' bounds
        raise ValueError(f"{TIME_RULE}, got {text.strip()!r}")
    return ts.timestamp()


def read_series(path: Path) -> Result:
    """The rows of a `timestamp,value` file; a bad row is an error naming its line, a file
    that cannot be read at all a ValueError naming the line where reading stopped."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(f"{path}: line {line}: not UTF-8 (byte {exc.start})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _rows(path, reader)
    except csv.Error as exc:
        raise ValueError(f"{path}: line {reader.line_num}: {exc}") from None


def _rows(path: Path, reader: Iterator[list[str]]) -> Result:
    rows: list[Row] = []
    errors: list[str] = []
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header[:2]] != ["timestamp", "value"]:
        raise ValueError(f"{path}: line 1: expected header 'timestamp,value', got {header}")
    for line, cells in enumerate(reader, start=2):
        if not cells:
            continue
        row = Row(line, cells[0], cells[1] if len(cells) > 1 else "")
        rows.append(row)
        try:
            row.t = _parse_time(row.timestamp)
        except ValueError as exc:
            errors.append(f"{path}: line {line}: field timestamp: {exc}")
            continue
        if row.value.strip():
            try:
                x = float(row.value)
            except ValueError:
                errors.append(f"{path}: line {line}: field value: not a number: {row.value!r}")
                continue
            if math.isfinite(x) and abs(x) <= MAX_MAGNITUDE:
                row.x = x
            else:
                errors.append(
                    f"{path}: line {line}: field value: not finite or beyond "
                    f"{MAX_MAGNITUDE:g} in magnitude: {row.value!r}"
                )
    return Result(rows, errors)


def backtest(
    path: Path, kind: str | None = None, params: Mapping[str, Any] | None = None
) -> Result:
    """Score every row of one CSV file; rows that cannot be read get score 0."""
    result = read_series(path)
    verdicts: dict[float, Verdict] = {}

    def keep(series: Series, t: float, verdict: Verdict) -> None:
        verdicts[t] = verdict

    engine = Engine(one_monitor_catalog(kind, params or {}), on_verdict=keep)
    timed = sorted((r for r in result.rows if r.t is not None), key=lambda r: r.t or 0.0)
    by_time: dict[float, Row] = {}
    for row in timed:
        assert row.t is not None
        by_time.setdefault(row.t, row)
        record = MetricPoint(
            product=PRODUCT, name="value", ts=datetime.fromtimestamp(row.t, UTC), value=row.x
        )
        verdicts.clear()
        outcome = engine.process(record)
        result.errors.extend(f"{path}: line {row.line}: {e.reason}" for e in outcome.errors)
        verdict = verdicts.get(row.t)
        if verdict is None:
            continue
        row.score = min(1.0, max(0.0, verdict.score)) if verdict.score == verdict.score else 0.0
        row.expected, row.lower, row.upper = verdict.expected, verdict.lower, verdict.upper
        result.anomalies += verdict.anomalous
        if verdict.changepoint_at is not None and verdict.changepoint_at in by_time:
            by_time[verdict.changepoint_at].changepoint = 1
    return result


def write_scores(result: Result, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value", "anomaly_score", "changepoint"])
        for row in result.rows:
            writer.writerow([row.timestamp, row.value, f"{row.score:.6f}", row.changepoint])
