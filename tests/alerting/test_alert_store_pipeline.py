"""SqliteAlertStore persistence and the AlertProcessor glue, end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lupus_stream.alerting import (
    AlertProcessor,
    AlertState,
    SqliteAlertStore,
    catalog_lookup,
)
from lupus_stream.contracts.records import Anomaly
from lupus_stream.monitors.spec import Catalog, Monitor, ProductSpec

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def make_monitor(**alert: Any) -> Monitor:
    raw = {"name": "ctr", "signal": {"kind": "metric", "name": "ctr"}, "alert": alert}
    return msgspec.structs.replace(msgspec.convert(raw, type=Monitor), product="p")


def make_anomaly(aid: str, hours: float, state: str = "anomalous", region: str = "eu") -> Anomaly:
    return Anomaly(
        id=aid,
        product="p",
        monitor="p/ctr",
        series={"region": region},
        ts=T0 + timedelta(hours=hours),
        state=state,  # type: ignore[arg-type]
        kind="level",
        detector="zscore",
        score=3.0,
        value=0.1,
    )


def make_state(fp: str, status: str) -> AlertState:
    return AlertState(
        fingerprint=fp,
        product="p",
        monitor="p/ctr",
        receiver="oncall",
        labels={"alertname": "ctr", "fp": fp},
        status=status,  # type: ignore[arg-type]
        pending_since=1.5,
    )


def test_sqlite_round_trip_and_persistence(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    store = SqliteAlertStore(path)
    states = [make_state(f"fp{i}", s) for i, s in enumerate(["pending", "firing", "resolved"])]
    store.put_many(states)
    store.put(make_state("fp3", "inactive"))
    assert store.get("fp1") == states[1]
    assert store.get("missing") is None
    store.put(msgspec.structs.replace(states[0], status="resolved"))
    store.close()

    reopened = SqliteAlertStore(path)
    assert reopened.get("fp2") == states[2]
    assert [s.fingerprint for s in reopened.active()] == ["fp1"]
    assert (reopened.get("fp0") or states[0]).status == "resolved"
    reopened.close()


def test_sqlite_transaction_batches_and_rolls_back(tmp_path: Path) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    with store.transaction():
        store.put(make_state("a", "firing"))
        store.put_many([make_state("b", "pending")])
    assert len(store.active()) == 2
    with pytest.raises(RuntimeError), store.transaction():
        store.put(make_state("c", "firing"))
        raise RuntimeError("boom")
    assert store.get("c") is None
    store.close()


def test_processor_end_to_end(tmp_path: Path) -> None:
    monitor = make_monitor(keep_firing_for="1h", annotations={"summary": "ctr {value:.2f}"})
    monitors = {monitor.id: (monitor, "oncall")}
    path = tmp_path / "alerts.db"
    store = SqliteAlertStore(path)
    proc = AlertProcessor(monitors.__getitem__, store)

    (fired,) = proc.process(make_anomaly("a0", 0))
    assert fired.status == "firing" and fired.annotations == {"summary": "ctr 0.10"}
    assert proc.process(make_anomaly("a1", 1)) == []
    (other,) = proc.process(make_anomaly("b0", 1, region="us"))
    assert other.labels["region"] == "us" and other.fingerprint != fired.fingerprint
    assert {s.fingerprint for s in store.active()} == {fired.fingerprint, other.fingerprint}
    store.close()

    # Restart: a new store on the same file, and the detect stage replays its output.
    store = SqliteAlertStore(path)
    proc = AlertProcessor(monitors.__getitem__, store)
    for aid, hours in [("a0", 0), ("a1", 1)]:
        assert proc.process(make_anomaly(aid, hours)) == []

    assert proc.process(make_anomaly("r2", 2, "recovered")) == []
    now = (T0 + timedelta(hours=2.5)).timestamp()
    assert proc.tick(now) == []
    (resolved,) = proc.tick(now + 3600)
    assert resolved.status == "resolved" and resolved.fingerprint == fired.fingerprint
    assert resolved.ends_at == T0 + timedelta(hours=3)
    assert proc.tick(now + 7200) == []
    assert [s.labels["region"] for s in store.active()] == ["us"]
    store.close()


def test_catalog_lookup_and_unknown_monitor(tmp_path: Path) -> None:
    spec = ProductSpec(product="p", owner="me", receiver="p-oncall", monitors=[make_monitor()])
    lookup = catalog_lookup(Catalog(products={"p": spec}))
    assert lookup("p/ctr")[1] == "p-oncall"
    store = SqliteAlertStore(tmp_path / "alerts.db")
    proc = AlertProcessor(lookup, store)
    assert proc.process(make_anomaly("a0", 0))[0].receiver == "p-oncall"
    with pytest.raises(KeyError):
        proc.process(msgspec.structs.replace(make_anomaly("x", 0), monitor="p/nope"))
    store.close()
