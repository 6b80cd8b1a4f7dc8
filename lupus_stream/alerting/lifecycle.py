"""The alert state machine: Anomaly records in, AlertEvent transitions out.

Pure (no I/O, no clock): the caller passes the prior state and, for ticks, `now` as
epoch seconds, so the embedded and the Kafka/Redis runtimes share this code and a
replay after a restart reproduces the same decisions. Times in `AlertState` are
epoch seconds (floats) so the state is cheap to store as JSON.

Prometheus semantics: `for` holds an alert in pending until anomalies span that long;
`keep_firing_for` keeps it firing that long after the series recovered.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from msgspec.structs import replace

from lupus_stream.alerting.fingerprint import alert_labels, fingerprint
from lupus_stream.contracts.records import AlertEvent, Anomaly
from lupus_stream.monitors.spec import AlertPolicy, Monitor

Status = Literal["inactive", "pending", "firing", "resolved"]
_RENDER_ERRORS = (KeyError, IndexError, AttributeError, TypeError, ValueError)


class _NamesOnly(string.Formatter):
    """`str.format` with names and format specs only: `{value.__class__}` or `{x[0]}`
    would reach into Python objects from a monitor file."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> Any:
        if "." in field_name or "[" in field_name:
            raise KeyError(field_name)
        return super().get_field(field_name, args, kwargs)


_FORMATTER = _NamesOnly()


class AlertState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything needed to continue one alert (one fingerprint) after a restart."""

    fingerprint: str
    product: str
    monitor: str
    receiver: str
    labels: dict[str, str]
    annotations: dict[str, str] = {}
    status: Status = "inactive"
    pending_since: float | None = None
    active_since: float | None = None
    last_anomaly_at: float | None = None
    last_anomaly_id: str = ""
    recovered_at: float | None = None
    resolved_at: float | None = None
    value: float | None = None
    score: float = 0.0
    last_event_ts: float | None = None
    last_event_ids: tuple[str, ...] = ()  # ids already applied at `last_event_ts`
    silenced_by: tuple[str, ...] = ()  # the silences that muted its last transition


def to_datetime(epoch: float) -> datetime:
    """Epoch seconds as a tz-aware UTC datetime (what `AlertEvent` carries)."""
    return datetime.fromtimestamp(epoch, tz=UTC)


def render_annotations(templates: dict[str, str], anomaly: Anomaly) -> dict[str, str]:
    """Render templates like `str.format_map` (names and format specs only); a template
    that fails stays raw text."""
    context: dict[str, Any] = {
        **anomaly.series,
        "value": anomaly.value,
        "expected": anomaly.expected,
        "lower": anomaly.lower,
        "upper": anomaly.upper,
        "score": anomaly.score,
        "detail": anomaly.detail,
        "ts": anomaly.ts,
    }
    out: dict[str, str] = {}
    for name, template in templates.items():
        try:
            out[name] = _FORMATTER.vformat(template, (), context)
        except _RENDER_ERRORS:
            out[name] = template
    return out


def new_state(anomaly: Anomaly, monitor: Monitor, receiver: str) -> AlertState:
    """An inactive state for the alert `anomaly` belongs to."""
    labels = alert_labels(anomaly, monitor)
    return AlertState(
        fingerprint=fingerprint(labels),
        product=monitor.product,
        monitor=monitor.id,
        receiver=receiver,
        labels=labels,
    )


def on_anomaly(
    state: AlertState | None, anomaly: Anomaly, monitor: Monitor, receiver: str
) -> tuple[AlertState, list[AlertEvent]]:
    """Apply one anomaly; replays (same id, or older than the last applied) are no-ops."""
    fresh = new_state(anomaly, monitor, receiver)
    if state is None:
        state = fresh
    elif state.fingerprint != fresh.fingerprint:
        raise ValueError(f"state {state.fingerprint} is not the alert of {anomaly.id}")
    if _already_applied(state, anomaly):
        return state, []
    ts = anomaly.ts.timestamp()
    policy = monitor.alert
    # A resolution that fell due before this anomaly happened first, even without a tick.
    state, events = on_tick(state, ts, policy)
    state = _mark_applied(replace(state, receiver=receiver), anomaly, ts)
    if anomaly.state == "anomalous":
        state, fired = _on_anomalous(state, anomaly, ts, policy)
        return state, events + fired
    if state.status == "pending":
        return replace(state, status="inactive", pending_since=None), events
    if state.status == "firing":
        if state.recovered_at is None:
            state = replace(state, recovered_at=ts)
        state, resolved = on_tick(state, ts, policy)
        return state, events + resolved
    return state, events


def on_tick(
    state: AlertState, now: float, policy: AlertPolicy
) -> tuple[AlertState, list[AlertEvent]]:
    """Resolve a firing alert once `keep_firing_for` has passed since it recovered.

    The resolution is stamped at `recovered_at + keep_firing_for`, not at `now`, so the
    result does not depend on how often the runtime ticks.
    """
    if state.status != "firing" or state.recovered_at is None:
        return state, []
    ends = state.recovered_at + policy.keep_firing_seconds
    if ends > now:
        return state, []
    state = replace(state, status="resolved", resolved_at=ends)
    return state, [_event(state, "resolved", ends)]


def _already_applied(state: AlertState, anomaly: Anomaly) -> bool:
    if anomaly.id == state.last_anomaly_id:
        return True
    if state.last_event_ts is None:
        return False
    ts = anomaly.ts.timestamp()
    return ts < state.last_event_ts or (
        ts == state.last_event_ts and anomaly.id in state.last_event_ids
    )


def _mark_applied(state: AlertState, anomaly: Anomaly, ts: float) -> AlertState:
    ids = state.last_event_ids if ts == state.last_event_ts else ()
    return replace(state, last_event_ts=ts, last_event_ids=(*ids, anomaly.id))


def _on_anomalous(
    state: AlertState, anomaly: Anomaly, ts: float, policy: AlertPolicy
) -> tuple[AlertState, list[AlertEvent]]:
    state = replace(
        state,
        annotations=render_annotations(policy.annotations, anomaly),
        last_anomaly_at=ts,
        last_anomaly_id=anomaly.id,
        recovered_at=None,
        value=anomaly.value,
        score=anomaly.score,
    )
    if state.status == "firing":
        return state, []
    since = state.pending_since
    if state.status != "pending" or since is None:
        since = ts
        state = replace(
            state, status="pending", pending_since=ts, active_since=None, resolved_at=None
        )
    if ts - since < policy.for_seconds:
        return state, []
    state = replace(state, status="firing", active_since=ts)
    return state, [firing_event(state, ts)]


def firing_event(state: AlertState, at: float) -> AlertEvent:
    """The `firing` notification of a firing alert, at `at`."""
    return _event(state, "firing", at)


def _event(state: AlertState, status: Literal["firing", "resolved"], at: float) -> AlertEvent:
    starts = state.active_since if state.active_since is not None else at
    return AlertEvent(
        fingerprint=state.fingerprint,
        status=status,
        at=to_datetime(at),
        product=state.product,
        monitor=state.monitor,
        receiver=state.receiver,
        labels=dict(state.labels),
        annotations=dict(state.annotations),
        starts_at=to_datetime(starts),
        ends_at=to_datetime(at) if status == "resolved" else None,
        anomaly_id=state.last_anomaly_id,
        value=state.value,
        score=state.score,
    )
