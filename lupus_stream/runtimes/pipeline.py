"""decode -> engine -> alert stage -> sinks, in one process: the embedded runtime's core.

Synchronous and single-threaded on purpose: the CLI's asyncio shell, the demo and the
tests all drive the same object. Bad input becomes a dead-letter line with the reason;
nothing is dropped silently and nothing stops the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lupus_stream.alerting.pipeline import AlertProcessor, catalog_lookup
from lupus_stream.alerting.sqlite_store import SqliteAlertStore
from lupus_stream.contracts import AlertEvent, Anomaly, DeadLetter, decode_message
from lupus_stream.engine import Engine, Outcome
from lupus_stream.monitors import Catalog
from lupus_stream.runtimes.checkpoint import CheckpointStore
from lupus_stream.runtimes.sinks import JsonlSink

ENGINE_CHECKPOINT = "engine"
DB_FILE = "lupus.db"


@dataclass(slots=True)
class Counts:
    records: int = 0
    deadlettered: int = 0
    anomalies: int = 0
    firing: int = 0
    resolved: int = 0


class Pipeline:
    """The embedded runtime's processing core, with state under `data_dir`."""

    def __init__(
        self,
        catalog: Catalog,
        data_dir: Path,
        out_dir: Path,
        on_alert: Callable[[AlertEvent], None] | None = None,
        on_deadletter: Callable[[DeadLetter], None] | None = None,
        tick_every: float = 60.0,
    ) -> None:
        self.catalog = catalog
        self.engine = Engine(catalog)
        db = data_dir / DB_FILE
        data_dir.mkdir(parents=True, exist_ok=True)
        self.alerts = SqliteAlertStore(db)
        self.checkpoints = CheckpointStore(db)
        self.processor = AlertProcessor(catalog_lookup(catalog), self.alerts)
        self.anomaly_sink = JsonlSink(out_dir / "anomalies.jsonl")
        self.alert_sink = JsonlSink(out_dir / "alerts.jsonl")
        self.deadletter_sink = JsonlSink(out_dir / "deadletter.jsonl")
        self.on_alert = on_alert
        self.on_deadletter = on_deadletter
        self.tick_every = tick_every
        self.counts = Counts()
        self.restore_notes: list[str] = []
        self._last_tick: float | None = None
        snapshot = self.checkpoints.get(ENGINE_CHECKPOINT)
        if snapshot is not None:
            self.restore_notes = self.engine.restore(snapshot)

    def ingest(self, data: bytes, source: str, now: float | None = None) -> Counts:
        """Process one message (a record or a batch); returns what it produced. `now`:
        the wall clock, when the run follows one (events far ahead of it are refused)."""
        before = _copy(self.counts)
        clock = None if now is None else datetime.fromtimestamp(now, UTC)
        decoded = decode_message(data, known_products=self.engine.products, now=clock)
        for error in decoded.errors:
            self.deadletter(
                source, error.describe(), error.raw or data, error.index, error.field, error.rule
            )
        with self.alerts.transaction():
            for k, record in enumerate(decoded.records):
                outcome = self.engine.process(record)
                self.counts.records += 1
                if outcome.errors:  # kept: the record (its place in a batch) and why
                    raw, index = decoded.origin(k, data)
                    for failure in outcome.errors:
                        self.deadletter(source, failure.reason, raw, index, None, failure.rule)
                self._emit(outcome)
            watermark = self.engine.watermark
            if watermark is not None and (
                self._last_tick is None or watermark - self._last_tick >= self.tick_every
            ):
                self._tick(watermark)
        return _diff(self.counts, before)

    def tick(self, now: float) -> Counts:
        """Absence, freshness and keep-firing checks at `now` (epoch seconds)."""
        before = _copy(self.counts)
        with self.alerts.transaction():
            self._tick(now)
        return _diff(self.counts, before)

    def _tick(self, now: float) -> None:
        self._last_tick = now
        outcome = self.engine.tick(now)
        for error in outcome.errors:  # an absence or freshness check that failed
            at = datetime.fromtimestamp(now, UTC).isoformat()
            self.deadletter(f"tick at {at}", error.reason, b"", None, None, error.rule)
        self._emit(outcome)
        for event in self.processor.tick(now):
            self._alert(event)

    def _emit(self, outcome: Outcome) -> None:
        for anomaly in outcome.anomalies:
            self._anomaly(anomaly)

    def _anomaly(self, anomaly: Anomaly) -> None:
        self.anomaly_sink.write(anomaly)
        if anomaly.state == "anomalous":
            self.counts.anomalies += 1
        for event in self.processor.process(anomaly):
            self._alert(event)

    def _alert(self, event: AlertEvent) -> None:
        self.alert_sink.write(event)
        if event.status == "firing":
            self.counts.firing += 1
        else:
            self.counts.resolved += 1
        if self.on_alert is not None:
            self.on_alert(event)

    def deadletter(
        self,
        source: str,
        reason: str,
        raw: bytes,
        index: int | None = None,
        field: str | None = None,
        rule: str = "",
    ) -> None:
        entry = DeadLetter(
            source=source,
            reason=reason,
            received_at=datetime.now(UTC),
            raw=raw,
            record_index=index,
            field=field,
            rule=rule,
        )
        self.deadletter_sink.write(entry)
        self.counts.deadlettered += 1
        if self.on_deadletter is not None:
            self.on_deadletter(entry)

    def checkpoint(self, offsets: dict[str, int] | None = None) -> None:
        """Flush outputs, then persist engine state and input offsets together."""
        for sink in (self.anomaly_sink, self.alert_sink, self.deadletter_sink):
            sink.flush()
        items = {ENGINE_CHECKPOINT: self.engine.snapshot()}
        for name, offset in (offsets or {}).items():
            items[f"offset:{name}"] = str(offset).encode()
        self.checkpoints.put_many(items)

    def offsets(self) -> dict[str, int]:
        return self.checkpoints.offsets()

    def close(self, offsets: dict[str, int] | None = None) -> None:
        self.checkpoint(offsets)
        for sink in (self.anomaly_sink, self.alert_sink, self.deadletter_sink):
            sink.close()
        self.alerts.close()
        self.checkpoints.close()


def _copy(c: Counts) -> Counts:
    return Counts(c.records, c.deadlettered, c.anomalies, c.firing, c.resolved)


def _diff(a: Counts, b: Counts) -> Counts:
    return Counts(
        a.records - b.records,
        a.deadlettered - b.deadlettered,
        a.anomalies - b.anomalies,
        a.firing - b.firing,
        a.resolved - b.resolved,
    )
