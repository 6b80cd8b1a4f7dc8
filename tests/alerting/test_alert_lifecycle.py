"""Lifecycle of one alert: table-driven scenarios, replays, fingerprints, annotations."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from lupus_stream.alerting import (
    AlertState,
    alert_labels,
    fingerprint,
    on_anomaly,
    on_tick,
    render_annotations,
)
from lupus_stream.contracts.records import AlertEvent, Anomaly
from lupus_stream.monitors.spec import Monitor

T0 = datetime(2024, 5, 1, tzinfo=UTC)
EPOCH0 = T0.timestamp()
SERIES = {"surface": "sticker_panel"}


def make_monitor(**alert: Any) -> Monitor:
    raw = {"name": "daily_ctr", "signal": {"kind": "metric", "name": "ctr"}, "alert": alert}
    return msgspec.structs.replace(msgspec.convert(raw, type=Monitor), product="p")


def make_anomaly(
    hours: float, state: str = "anomalous", aid: str | None = None, **kw: Any
) -> Anomaly:
    fields: dict[str, Any] = {"value": 0.02, "expected": 0.05, "score": 4.0} | kw
    return Anomaly(
        id=aid or f"{state}-{hours}",
        product="p",
        monitor="p/daily_ctr",
        series=dict(SERIES),
        ts=T0 + timedelta(hours=hours),
        state=state,  # type: ignore[arg-type]
        kind="level",
        detector="zscore",
        **fields,
    )


def run(monitor: Monitor, steps: list[tuple[str, float]]) -> tuple[AlertState | None, list[Any]]:
    """Feed steps ("A"nomalous, "R"ecovered, "T"ick at hour) and list (status, hour)."""
    state: AlertState | None = None
    events: list[AlertEvent] = []
    for kind, hours in steps:
        if kind == "T":
            assert state is not None
            state, new = on_tick(state, EPOCH0 + hours * 3600, monitor.alert)
        else:
            state, new = on_anomaly(
                state,
                make_anomaly(hours, "anomalous" if kind == "A" else "recovered"),
                monitor,
                "oncall",
            )
        events += new
    hours_of = [(e.status, (e.at - T0).total_seconds() / 3600) for e in events]
    return state, hours_of


SCENARIOS = [
    ("fires immediately with for=0", {}, [("A", 0)], [("firing", 0)], "firing"),
    (
        "for 2h fires after 2h",
        {"for": "2h"},
        [("A", 0), ("A", 1), ("A", 2)],
        [("firing", 2)],
        "firing",
    ),
    ("for 2h not yet", {"for": "2h"}, [("A", 0), ("A", 1.5)], [], "pending"),
    (
        "recovered before for",
        {"for": "2h"},
        [("A", 0), ("A", 1), ("R", 1.5), ("A", 2), ("A", 3)],
        [],
        "pending",
    ),
    ("recovered while pending", {"for": "2h"}, [("A", 0), ("R", 1), ("T", 9)], [], "inactive"),
    ("dedup while firing", {}, [("A", 0), ("A", 1), ("A", 2), ("A", 3)], [("firing", 0)], "firing"),
    (
        "resolves immediately",
        {},
        [("A", 0), ("R", 1)],
        [("firing", 0), ("resolved", 1)],
        "resolved",
    ),
    (
        "keep_firing_for resolves on tick, stamped at due time",
        {"keep_firing_for": "1d"},
        [("A", 0), ("R", 1), ("T", 10), ("T", 30), ("T", 40)],
        [("firing", 0), ("resolved", 25)],
        "resolved",
    ),
    (
        "anomalous again during keep_firing_for",
        {"keep_firing_for": "1d"},
        [("A", 0), ("R", 1), ("A", 5), ("T", 30)],
        [("firing", 0)],
        "firing",
    ),
    (
        "repeated recovered keeps the first recovery time",
        {"keep_firing_for": "1h"},
        [("A", 0), ("R", 1), ("R", 1.5), ("T", 2)],
        [("firing", 0), ("resolved", 2)],
        "resolved",
    ),
    (
        "re-fires after resolve",
        {},
        [("A", 0), ("R", 1), ("A", 2)],
        [("firing", 0), ("resolved", 1), ("firing", 2)],
        "firing",
    ),
    (
        "due resolution applied before the next anomaly without a tick",
        {"keep_firing_for": "1h"},
        [("A", 0), ("R", 1), ("A", 5)],
        [("firing", 0), ("resolved", 2), ("firing", 5)],
        "firing",
    ),
    ("recovered with no alert", {}, [("R", 0)], [], "inactive"),
]


@pytest.mark.parametrize(
    ("policy", "steps", "expected", "final"),
    [s[1:] for s in SCENARIOS],
    ids=[s[0] for s in SCENARIOS],
)
def test_lifecycle(
    policy: dict[str, Any],
    steps: list[tuple[str, float]],
    expected: list[tuple[str, float]],
    final: str,
) -> None:
    state, events = run(make_monitor(**policy), steps)
    assert events == expected
    assert state is not None and state.status == final


def test_event_fields() -> None:
    monitor = make_monitor(
        keep_firing_for="1h",
        labels={"team": "stickers"},
        annotations={"summary": "CTR {value:.4f}, expected {expected:.4f}"},
    )
    state, fired = on_anomaly(None, make_anomaly(0, aid="x1"), monitor, "oncall")
    (event,) = fired
    assert event.status == "firing"
    assert event.fingerprint == state.fingerprint == fingerprint(event.labels)
    assert event.labels == {
        "alertname": "daily_ctr",
        "product": "p",
        "severity": "ticket",
        "surface": "sticker_panel",
        "team": "stickers",
    }
    assert event.annotations == {"summary": "CTR 0.0200, expected 0.0500"}
    assert (event.product, event.monitor, event.receiver) == ("p", "p/daily_ctr", "oncall")
    assert event.at == event.starts_at == T0
    assert event.ends_at is None
    assert (event.anomaly_id, event.value, event.score) == ("x1", 0.02, 4.0)

    state, _ = on_anomaly(state, make_anomaly(1, "recovered", value=0.05), monitor, "oncall")
    state, resolved = on_tick(state, EPOCH0 + 7200, monitor.alert)
    (end,) = resolved
    assert end.status == "resolved"
    assert end.starts_at == T0
    assert end.at == end.ends_at == T0 + timedelta(hours=2)
    assert end.annotations == event.annotations  # from the last anomalous observation
    assert (end.anomaly_id, end.value) == ("x1", 0.02)


def test_state_is_json_serialisable() -> None:
    state, _ = on_anomaly(None, make_anomaly(0), make_monitor(), "oncall")
    data = msgspec.json.encode(state)
    assert msgspec.json.decode(data, type=AlertState) == state


def test_replays_change_nothing() -> None:
    monitor = make_monitor(keep_firing_for="1h")
    history = [make_anomaly(0, aid="a0"), make_anomaly(1, aid="a1")]
    state: AlertState | None = None
    for anomaly in history:
        state, _ = on_anomaly(state, anomaly, monitor, "oncall")
    assert state is not None and state.status == "firing"
    for anomaly in [*history, make_anomaly(0.5, aid="late"), make_anomaly(1, "recovered", "a1")]:
        replayed, events = on_anomaly(state, anomaly, monitor, "oncall")
        assert events == []
        assert replayed == state


def test_replay_after_resolve_does_not_refire() -> None:
    monitor = make_monitor()
    history = [make_anomaly(0, aid="a0"), make_anomaly(1, "recovered", aid="r1")]
    state: AlertState | None = None
    for anomaly in history:
        state, _ = on_anomaly(state, anomaly, monitor, "oncall")
    assert state is not None and state.status == "resolved"
    for anomaly in history:
        assert on_anomaly(state, anomaly, monitor, "oncall") == (state, [])


def test_same_timestamp_different_id_is_applied() -> None:
    monitor = make_monitor(**{"for": "1h"})
    state, _ = on_anomaly(None, make_anomaly(0, aid="a"), monitor, "oncall")
    state, events = on_anomaly(state, make_anomaly(0, aid="b"), monitor, "oncall")
    assert events == [] and state.last_event_ids == ("a", "b")
    assert on_anomaly(state, make_anomaly(0, aid="a"), monitor, "oncall") == (state, [])


def test_foreign_state_is_rejected() -> None:
    state, _ = on_anomaly(None, make_anomaly(0), make_monitor(), "oncall")
    other = msgspec.structs.replace(state, fingerprint="0" * 16)
    with pytest.raises(ValueError, match="not the alert"):
        on_anomaly(other, make_anomaly(1), make_monitor(), "oncall")


def test_fingerprint_is_independent_of_order() -> None:
    a = {"alertname": "x", "product": "p", "severity": "page", "region": "eu"}
    b = dict(reversed(list(a.items())))
    assert list(a) != list(b)
    assert fingerprint(a) == fingerprint(b)
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint(a))
    assert fingerprint(a) != fingerprint({**a, "region": "us"})
    assert fingerprint({"a": "b=c"}) != fingerprint({"a=b": "c"})


def test_alert_labels_precedence() -> None:
    monitor = make_monitor(severity="page", labels={"team": "policy", "alertname": "no"})
    anomaly = msgspec.structs.replace(
        make_anomaly(0),
        series={"team": "series", "severity": "info", "product": "q", "region": "eu"},
    )
    assert alert_labels(anomaly, monitor) == {
        "alertname": "daily_ctr",
        "product": "p",
        "severity": "page",
        "team": "policy",
        "region": "eu",
    }


RENDER_CASES = [
    (
        "Sticker panel CTR is {value:.4f}, expected about {expected:.4f}",
        "Sticker panel CTR is 0.0200, expected about 0.0500",
    ),
    ("Only {value:.0%} of the catalog", "Only 2% of the catalog"),
    (
        "{surface}: score {score:.1f}, band [{lower}, {upper}]",
        "sticker_panel: score 4.0, band [None, None]",
    ),
    ("on {ts:%Y-%m-%d} {detail}", "on 2024-05-01 level shift"),
    ("missing {nope}", "missing {nope}"),
    ("bad spec {value:.4q}", "bad spec {value:.4q}"),
    ("None with float spec {lower:.2f}", "None with float spec {lower:.2f}"),
    ("positional {0}", "positional {0}"),
    ("unbalanced {value", "unbalanced {value"),
    ("no attributes {value.__class__}", "no attributes {value.__class__}"),
    ("no items {surface[0]}", "no items {surface[0]}"),
    ("nor inside a spec {value:{ts.year}}", "nor inside a spec {value:{ts.year}}"),
]


@pytest.mark.parametrize(("template", "expected"), RENDER_CASES)
def test_render_annotations(template: str, expected: str) -> None:
    anomaly = make_anomaly(0, detail="level shift")
    assert render_annotations({"summary": template}, anomaly) == {"summary": expected}
