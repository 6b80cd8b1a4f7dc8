"""Alert stage: turns detector anomalies into Alertmanager-style alert transitions."""

from lupus_stream.alerting.fingerprint import alert_labels, fingerprint
from lupus_stream.alerting.lifecycle import (
    AlertState,
    new_state,
    on_anomaly,
    on_tick,
    render_annotations,
    to_datetime,
)
from lupus_stream.alerting.pipeline import AlertProcessor, MonitorLookup, catalog_lookup
from lupus_stream.alerting.sqlite_store import SqliteAlertStore
from lupus_stream.alerting.store import AlertStore

__all__ = [
    "AlertProcessor",
    "AlertState",
    "AlertStore",
    "MonitorLookup",
    "SqliteAlertStore",
    "alert_labels",
    "catalog_lookup",
    "fingerprint",
    "new_state",
    "on_anomaly",
    "on_tick",
    "render_annotations",
    "to_datetime",
]
