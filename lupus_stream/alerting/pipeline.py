"""Glue between the lifecycle and a store; the only side effects are store reads/writes."""

from __future__ import annotations

from collections.abc import Callable

from lupus_stream.alerting.fingerprint import alert_labels, fingerprint
from lupus_stream.alerting.lifecycle import on_anomaly
from lupus_stream.alerting.silences import mute, on_tick_silenced
from lupus_stream.alerting.store import AlertStore
from lupus_stream.contracts.records import AlertEvent, Anomaly
from lupus_stream.monitors.spec import AlertPolicy, Catalog, Monitor

MonitorLookup = Callable[[str], tuple[Monitor, str]]


def catalog_lookup(catalog: Catalog) -> MonitorLookup:
    """A `monitor_for` over a loaded catalog: monitor id -> (monitor, product receiver)."""

    def monitor_for(monitor_id: str) -> tuple[Monitor, str]:
        monitor = catalog.monitor(monitor_id)
        return monitor, catalog.products[monitor.product].receiver

    return monitor_for


def policy_for(monitor_for: MonitorLookup, monitor_id: str) -> AlertPolicy:
    """The alert policy of `monitor_id`, or the default one if its monitor left the catalog.

    Used when resolving alerts on a tick: an alert must still resolve (with no
    keep-firing period) after its monitor was removed.
    """
    try:
        return monitor_for(monitor_id)[0].alert
    except KeyError:
        return AlertPolicy()


class AlertProcessor:
    """Applies anomalies and ticks to stored alert states, writing back only changes."""

    def __init__(self, monitor_for: MonitorLookup, store: AlertStore) -> None:
        self.monitor_for = monitor_for
        self.store = store

    def process(self, anomaly: Anomaly) -> list[AlertEvent]:
        """Events caused by one anomaly; raises KeyError for an unknown monitor id."""
        monitor, receiver = self.monitor_for(anomaly.monitor)
        old = self.store.get(fingerprint(alert_labels(anomaly, monitor)))
        new, events = on_anomaly(old, anomaly, monitor, receiver)
        if events:
            new, events = mute(new, events, self.store.silences())
        if new != old:
            self.store.put(new)
        return events

    def tick(self, now: float) -> list[AlertEvent]:
        """Resolve firing alerts whose keep-firing period ended by `now` (epoch seconds),
        and notify those that fired muted once their silences are over.

        An alert whose monitor left the catalog uses the default policy (no keep-firing).
        """
        events: list[AlertEvent] = []
        silences = self.store.silences()
        for state in self.store.active():
            policy = policy_for(self.monitor_for, state.monitor)
            new, out = on_tick_silenced(state, now, policy, silences)
            if new != state:
                self.store.put(new)
                events.extend(out)
        return events
