"""Replay a generated scenario through the embedded pipeline and check the alerts.

The records go through the real path (encoded as batch messages, decoded, routed,
detected, alerted) at accelerated time: event time drives every clock.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import msgspec

from lupus_stream.contracts import AlertEvent, encode_records
from lupus_stream.contracts.records import InputRecord
from lupus_stream.demo.generate import Incident, Scenario
from lupus_stream.monitors import Catalog
from lupus_stream.runtimes.pipeline import Pipeline

BATCH = 200
BAD_MESSAGES = (
    b'{"type": "metric", "product": "ad-model", "name": "impressions", '
    b'"ts": "2026-01-20T10:00:00", "value": 1}',
    b'{"type": "metric", "product": "no-such-product", "name": "x", '
    b'"ts": "2026-01-20T10:00:00Z", "value": 1}',
    b'[{"type": "source", "product": "ad-model", "source": "ads_click_log", '
    b'"partition": "2026-01-19", "row_count": -5, "landed_at": "2026-01-20T05:00:00Z"}]',
)


@dataclass
class Verification:
    caught: dict[str, list[AlertEvent]] = field(default_factory=dict)
    missed: list[Incident] = field(default_factory=list)
    false_alarms: list[AlertEvent] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missed and not self.false_alarms


def batches(records: list[InputRecord]) -> Iterator[list[InputRecord]]:
    """Messages of up to BATCH records, never spanning more than one hour of event time."""
    batch: list[InputRecord] = []
    for record in records:
        if batch and (
            len(batch) >= BATCH or record.event_time - batch[0].event_time >= timedelta(hours=1)
        ):
            yield batch
            batch = []
        batch.append(record)
    if batch:
        yield batch


def replay(
    scenario: Scenario,
    catalog: Catalog,
    out_dir: Path,
    on_alert: Callable[[AlertEvent], None],
    on_progress: Callable[[int, float], None],
) -> Pipeline:
    """Feed the scenario through a fresh pipeline; returns it closed."""
    data_dir = Path(tempfile.mkdtemp(prefix="lupus-demo-"))
    for name in ("anomalies.jsonl", "alerts.jsonl", "deadletter.jsonl"):
        (out_dir / name).unlink(missing_ok=True)
    pipeline = Pipeline(catalog, data_dir, out_dir, on_alert=on_alert)
    messages = list(batches(scenario.records))
    bad_at = {
        len(messages) * (k + 1) // (len(BAD_MESSAGES) + 1): k for k in range(len(BAD_MESSAGES))
    }
    for i, batch in enumerate(messages):
        pipeline.ingest(encode_records(batch), f"demo:batch {i}")
        if i in bad_at:
            pipeline.ingest(BAD_MESSAGES[bad_at[i]], f"demo:malformed {bad_at[i]}")
        on_progress(len(batch), batch[-1].event_time.timestamp())
    pipeline.tick(scenario.end.timestamp())
    pipeline.close()
    return pipeline


def verify(scenario: Scenario, alerts_file: Path) -> Verification:
    """Every incident has a firing alert from its monitor in its window; no other fires."""
    result = Verification()
    decoder = msgspec.json.Decoder(AlertEvent)
    firing = [
        event
        for line in alerts_file.read_bytes().splitlines()
        if line.strip() and (event := decoder.decode(line)).status == "firing"
    ]
    for event in firing:
        match = next(
            (
                inc
                for inc in scenario.incidents
                if inc.monitor == event.monitor and inc.start <= event.at <= inc.end
            ),
            None,
        )
        if match is None:
            result.false_alarms.append(event)
        else:
            result.caught.setdefault(match.name, []).append(event)
    result.missed = [inc for inc in scenario.incidents if inc.name not in result.caught]
    return result
