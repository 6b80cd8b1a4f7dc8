"""Prometheus metrics of a worker, on a dedicated registry served by prometheus_client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

if TYPE_CHECKING:
    from lupus_stream.runtimes.kafka.detect import DetectStage

REGISTRY = CollectorRegistry()
RECORDS_IN = Counter(
    "lupus_records_in_total", "Messages consumed, by topic", ["topic"], registry=REGISTRY
)
RECORDS_OUT = Counter(
    "lupus_records_out_total", "Messages produced, by topic", ["topic"], registry=REGISTRY
)
INPUT_RECORDS = Counter(
    "lupus_input_records_total",
    "Records read from input messages (one message may carry a batch), good and bad, by topic",
    ["topic"],
    registry=REGISTRY,
)
DEADLETTERED = Counter(
    "lupus_deadlettered_total", "Records sent to the dead-letter topic", registry=REGISTRY
)
LATENCY = Histogram(
    "lupus_processing_seconds",
    "Processing time of one input message (detect) or one batch of anomalies (alert), by stage",
    ["stage"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
    registry=REGISTRY,
)
ANOMALIES = Counter(
    "lupus_anomalies_total", "Anomalous verdicts emitted, by kind", ["kind"], registry=REGISTRY
)
ALERTS = Counter(
    "lupus_alert_transitions_total", "Alert transitions, by status", ["status"], registry=REGISTRY
)
DETECTORS = Gauge("lupus_detector_instances", "Live detector instances", registry=REGISTRY)
STATE_BYTES = Gauge(
    "lupus_snapshot_bytes", "Size of the last partition snapshot written", registry=REGISTRY
)
PARTITIONS = Gauge(
    "lupus_owned_partitions", "Input partition numbers assigned to this worker", registry=REGISTRY
)
LAG = Gauge(
    "lupus_consumer_lag",
    "Messages not yet processed, per input topic and partition",
    ["topic", "partition"],
    registry=REGISTRY,
)
ACTIVE_ALERTS = Gauge(
    "lupus_alerts", "Alerts by state (pending, firing)", ["state"], registry=REGISTRY
)
LAST_EVENT = Gauge(
    "lupus_last_event_timestamp_seconds",
    "Wall time of the last event processed",
    registry=REGISTRY,
)


def observe_stage(stage: DetectStage) -> None:
    DETECTORS.set(sum(len(p.engine.series) for p in stage.partitions.values()))
    STATE_BYTES.set(stage.counts.snapshot_bytes)


def serve(host: str, port: int) -> int:
    """Serve /metrics; returns the bound port (0 picks a free one)."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return int(server.server_address[1])
