"""Alert identity: the label set of an alert and its stable fingerprint.

An alert is one label set (Prometheus style), so replays and restarts find the same
alert again; the fingerprint must therefore not depend on dict order or the process.
"""

from __future__ import annotations

import hashlib

import msgspec

from lupus_stream.contracts.records import Anomaly
from lupus_stream.monitors.spec import Monitor


def alert_labels(anomaly: Anomaly, monitor: Monitor) -> dict[str, str]:
    """Series labels, overridden by policy labels, overridden by the identifying labels."""
    policy = monitor.alert
    return {
        **anomaly.series,
        **policy.labels,
        "alertname": monitor.name,
        "product": monitor.product,
        "severity": policy.severity,
    }


def fingerprint(labels: dict[str, str]) -> str:
    """First 16 hex chars of sha256 over the sorted (name, value) pairs."""
    payload = msgspec.json.encode(sorted(labels.items()))
    return hashlib.sha256(payload).hexdigest()[:16]
