"""Reading back the alerts topic after a drain that died before trimming its batch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from lupus_stream.alerting.redis_store import transition_id
from lupus_stream.contracts import AlertEvent
from lupus_stream.runtimes.kafka.readback import published_transitions
from tests.integration.kafka_harness import Namespace, produce, run

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def event(i: int, status: str = "firing") -> AlertEvent:
    at = T0 + timedelta(hours=i)
    return AlertEvent(
        fingerprint=f"fp{i % 5}",
        status=status,  # type: ignore[arg-type]
        at=at,
        product="shop",
        monitor="shop/orders",
        receiver="shop-oncall",
        labels={"alertname": "orders"},
        annotations={},
        starts_at=T0,
    )


def test_readback_finds_exactly_the_published_transitions(tmp_path: Path) -> None:
    ns = Namespace(workdir=tmp_path)
    created = ns.lupus("topics", "create")
    assert created.returncode == 0, created.stderr
    topic = ns.topic("lupus.alerts")
    batch = [event(i) for i in range(12)]
    assert run(published_transitions({"bootstrap_servers": ns.kafka}, topic, batch)) == set()

    older = [event(i, "resolved") for i in range(40)]  # history before the batch
    sent = batch[:7]  # the broker acknowledged these before the worker died
    messages = [(e.fingerprint.encode(), msgspec.json.encode(e)) for e in [*older, *sent]]
    messages.append((b"junk", json.dumps({"not": "an alert"}).encode()))
    run(produce(ns, "lupus.alerts", messages))

    found = run(published_transitions({"bootstrap_servers": ns.kafka}, topic, batch))
    assert found == {transition_id(e) for e in sent}
