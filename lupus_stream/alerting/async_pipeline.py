"""Async glue between the lifecycle and `RedisAlertStore`, for the Kafka/Faust runtime.

Mirrors `AlertProcessor`, but every read-modify-write goes through `store.apply`, so a
replayed anomaly, a duplicate tick or a stale worker after a rebalance cannot emit a
transition twice or overwrite newer state.

The events returned by `process` and `tick` are informational (metrics, logs): the same
script that commits a transition appends its events to the store's outbox, and they must
be published from there with `RedisAlertStore.drain_outbox`. Publishing the returned
list instead would lose the event of a transition committed just before a crash, since
the redelivered anomaly is then a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence

from lupus_stream.alerting.fingerprint import alert_labels, fingerprint
from lupus_stream.alerting.lifecycle import AlertState, on_anomaly
from lupus_stream.alerting.pipeline import MonitorLookup, policy_for
from lupus_stream.alerting.redis_store import RedisAlertStore, Transition
from lupus_stream.alerting.silences import Silence, mute, on_tick_silenced
from lupus_stream.contracts.records import AlertEvent, Anomaly
from lupus_stream.monitors.spec import AlertPolicy


class AsyncAlertProcessor:
    """Applies anomalies and ticks to alert states in Redis with compare-and-set writes."""

    def __init__(self, monitor_for: MonitorLookup, store: RedisAlertStore) -> None:
        self.monitor_for = monitor_for
        self.store = store

    def transition_for(
        self, anomaly: Anomaly, silences: Sequence[Silence]
    ) -> tuple[str, Transition]:
        """The alert an anomaly belongs to and what it does to it, its events muted by
        `silences`; KeyError for an unknown monitor id."""
        monitor, receiver = self.monitor_for(anomaly.monitor)

        def transition(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
            new, events = on_anomaly(state, anomaly, monitor, receiver)
            return mute(new, events, silences)

        return fingerprint(alert_labels(anomaly, monitor)), transition

    async def process(self, anomaly: Anomaly) -> list[AlertEvent]:
        """Events caused by one anomaly; raises KeyError for an unknown monitor id."""
        silences = await self.store.silences()
        return await self.store.apply(*self.transition_for(anomaly, silences))

    async def tick(self, now: float) -> list[AlertEvent]:
        """Resolve firing alerts whose keep-firing period ended by `now` (epoch seconds),
        and notify those that fired muted once their silences are over.

        The active list is only a candidate list: each resolution is re-decided on the
        current state inside `apply`, so an anomaly that re-armed the alert meanwhile, or
        another worker's tick that already resolved it, wins. An alert whose monitor left
        the catalog uses the default policy (no keep-firing), as in `AlertProcessor`.
        """
        events: list[AlertEvent] = []
        silences = await self.store.silences()
        for candidate in await self.store.active():
            if candidate.status != "firing":
                continue
            if candidate.recovered_at is None and not candidate.silenced_by:
                continue
            policy = policy_for(self.monitor_for, candidate.monitor)

            def transition(
                state: AlertState | None, policy: AlertPolicy = policy
            ) -> tuple[AlertState | None, list[AlertEvent]]:
                return (
                    (None, []) if state is None else on_tick_silenced(state, now, policy, silences)
                )

            events.extend(await self.store.apply(candidate.fingerprint, transition))
        return events
