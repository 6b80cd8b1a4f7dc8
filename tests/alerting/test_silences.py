"""Silences mute notifications, never alert state; a muted firing is notified when its
silences are over."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lupus_stream.alerting import AlertProcessor, SqliteAlertStore
from lupus_stream.alerting.silences import Silence, decode_silences, muting, new_silence
from lupus_stream.contracts.records import AlertEvent
from tests.alerting.test_alert_store_pipeline import T0, make_anomaly, make_monitor

HOUR = 3600.0


def at(hours: float) -> float:
    return (T0 + timedelta(hours=hours)).timestamp()


def silence(sid: str, start: float, end: float, **matchers: str) -> Silence:
    return Silence(id=sid, matchers=matchers, starts_at=at(start), ends_at=at(end))


def seen(events: list[AlertEvent]) -> list[tuple[str, str, float, list[str]]]:
    return [
        (e.status, e.labels["region"], (e.at - T0).total_seconds() / HOUR, e.silenced_by)
        for e in events
    ]


@pytest.mark.parametrize(
    ("matchers", "problem"),
    [
        ({}, "at least one matcher"),
        ({"region": "=~(unclosed"}, "matcher region"),
        ({"bad name": "x"}, "Expected `str` matching regex"),
        # Alertmanager's rule: these would mute every alert without those labels
        ({"region": ""}, "a missing label does not satisfy"),
        ({"region": "=~.*"}, "a missing label does not satisfy"),
        ({"region": "", "team": "=~a?"}, "a missing label does not satisfy"),
    ],
)
def test_a_silence_that_cannot_work_is_refused(matchers: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        new_silence(matchers, at(0), at(1), "me", "")


def test_a_silence_must_end_after_it_starts() -> None:
    with pytest.raises(ValueError, match="end after it starts"):
        new_silence({"region": "eu"}, at(1), at(1), "me", "")


def test_muting_follows_matchers_and_the_half_open_span() -> None:
    silences = [
        silence("eu", 1, 3, region="eu"),
        silence("not-us", 2, 4, region="!=us", alertname="=~c.*"),
    ]
    labels = {"region": "eu", "alertname": "ctr"}
    assert muting(labels, at(0.5), silences) == ()
    assert muting(labels, at(1), silences) == ("eu",)
    assert muting(labels, at(2.5), silences) == ("eu", "not-us")
    assert muting(labels, at(3), silences) == ("not-us",)
    assert muting(labels, at(4), silences) == ()
    assert muting({"region": "us", "alertname": "ctr"}, at(2.5), silences) == ()


def test_negated_matchers_alone_make_a_silence_as_in_alertmanager() -> None:
    made = new_silence({"team": "!=ads"}, at(0), at(1), "me", "")
    assert muting({"alertname": "ctr"}, at(0.5), [made]) == (made.id,)


def test_a_silence_stored_before_the_missing_label_rule_still_reads_and_mutes() -> None:
    raw = msgspec.json.encode(silence("old", 0, 9, region=""))
    [old] = decode_silences([("old", raw)])
    assert muting({"alertname": "ctr"}, at(1), [old]) == ("old",)


def test_a_missing_label_matches_as_the_empty_string_as_in_alertmanager() -> None:
    silences = [
        silence("no-region", 0, 9, alertname="ctr", region=""),
        silence("any-team", 0, 9, team="!="),
    ]
    assert muting({"alertname": "ctr"}, at(1), silences) == ("no-region",)
    assert muting({"alertname": "ctr", "team": "ads"}, at(1), silences) == (
        "no-region",
        "any-team",
    )
    assert muting({"alertname": "ctr", "region": "eu"}, at(1), silences) == ()
    assert muting({"alertname": "latency"}, at(1), silences) == ()


def test_transitions_in_a_silence_are_muted_and_a_muted_firing_is_notified_after(
    tmp_path: Path,
) -> None:
    monitor = make_monitor()
    store = SqliteAlertStore(tmp_path / "alerts.db")
    proc = AlertProcessor({monitor.id: (monitor, "oncall")}.__getitem__, store)
    store.put_silence(silence("s1", 1, 3, region="eu"))
    events: list[Any] = []
    events += proc.process(make_anomaly("a0", 0))  # before the silence: pages
    events += proc.process(make_anomaly("r1", 1.5, "recovered"))  # resolved, muted
    events += proc.process(make_anomaly("a2", 2))  # fires again, muted
    events += proc.process(make_anomaly("u2", 2, region="us"))  # another series: pages
    events += proc.tick(at(2.5))
    assert seen(events) == [
        ("firing", "eu", 0.0, []),
        ("resolved", "eu", 1.5, ["s1"]),
        ("firing", "eu", 2.0, ["s1"]),
        ("firing", "us", 2.0, []),
    ]
    # still firing when the silence ends: notified then, once, however the clock ticks
    assert seen(proc.tick(at(4))) == [("firing", "eu", 3.0, [])]
    assert proc.tick(at(5)) == []
    store.close()
    # the silences live with the alert states
    reopened = SqliteAlertStore(tmp_path / "alerts.db")
    assert [s.id for s in reopened.silences()] == ["s1"]
    reopened.close()


def test_expiring_a_silence_early_notifies_at_its_new_end(tmp_path: Path) -> None:
    monitor = make_monitor()
    store = SqliteAlertStore(tmp_path / "alerts.db")
    proc = AlertProcessor({monitor.id: (monitor, "oncall")}.__getitem__, store)
    window = silence("s2", 10, 20, alertname="ctr")
    store.put_silence(window)
    assert seen(proc.process(make_anomaly("a11", 11))) == [("firing", "eu", 11.0, ["s2"])]
    store.put_silence(msgspec.structs.replace(window, ends_at=at(12)))
    assert proc.tick(at(11.5)) == []
    assert seen(proc.tick(at(12.5))) == [("firing", "eu", 12.0, [])]
    store.close()


def test_the_resolution_of_a_firing_nobody_was_told_of_stays_muted(tmp_path: Path) -> None:
    monitor = make_monitor()
    store = SqliteAlertStore(tmp_path / "alerts.db")
    proc = AlertProcessor({monitor.id: (monitor, "oncall")}.__getitem__, store)
    store.put_silence(silence("s1", 1, 3, region="eu"))
    events = proc.process(make_anomaly("a2", 2))
    events += proc.process(make_anomaly("r3", 3.5, "recovered"))  # after the silence, no tick
    events += proc.tick(at(4))
    # notified after the silence, then resolved: the resolution pages
    events += proc.process(make_anomaly("a5", 5)) + proc.tick(at(6))
    store.put_silence(silence("s2", 5.5, 6.5, region="eu"))
    events += proc.tick(at(6.6))
    events += proc.process(make_anomaly("r7", 7, "recovered"))
    assert seen(events) == [
        ("firing", "eu", 2.0, ["s1"]),
        ("resolved", "eu", 3.5, ["s1"]),
        ("firing", "eu", 5.0, []),
        ("resolved", "eu", 7.0, []),
    ]
    store.close()


def test_a_silence_that_no_longer_reads_leaves_the_others_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteAlertStore(tmp_path / "alerts.db")
    store.put_silence(silence("good", 1, 3, region="eu"))
    bad = msgspec.json.encode(
        {"id": "bad", "matchers": {"a": "1"}, "starts_at": 0, "ends_at": 1e12}
    )
    store._conn.execute("INSERT INTO silences (id, silence) VALUES ('bad', ?)", (bad,))
    assert [s.id for s in store.silences()] == ["good"]
    assert "silence bad unreadable, ignored" in caplog.text
    store.close()
