"""The embedded pipeline and the number of series: a monitor's label sets beyond its
`max_series` are dead letters, and a series forgotten after `forget_after` resolves its
alert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from lupus_stream.contracts import MetricPoint
from lupus_stream.monitors import Catalog, load_catalog
from lupus_stream.runtimes.pipeline import Pipeline
from tests.catalogs import order_point


def catalog(tmp_path: Path, signal: str) -> Catalog:
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(
        "product: shop\nowner: team\nreceiver: oncall\nmonitors:\n"
        f"  - name: orders\n    signal: {signal}\n"
        "    detector: {kind: threshold, upper: 100}\n"
    )
    return load_catalog(tmp_path / "detectors")


def metric(hour: int, value: float, host: str) -> dict[str, Any]:
    return order_point(hour, value, host=host)


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_label_set_beyond_max_series_is_a_dead_letter_with_its_rule(tmp_path: Path) -> None:
    cat = catalog(tmp_path, "{kind: metric, name: orders, max_series: 1}")
    pipeline = Pipeline(cat, tmp_path / "data", tmp_path / "out")
    batch = [metric(0, 500.0, "a"), metric(1, 500.0, "b"), metric(2, 500.0, "a")]
    counts = pipeline.ingest(json.dumps(batch).encode(), "stdin:1")
    pipeline.close()
    assert counts.records == 3 and counts.deadlettered == 1 and counts.firing == 1
    [refused] = jsonl(tmp_path / "out" / "deadletter.jsonl")
    assert refused["rule"] == "series limit" and refused["record_index"] == 1
    assert "shop/orders{host=b} not tracked" in refused["reason"]
    kept = msgspec.json.decode(msgspec.convert(refused["raw"], bytes), type=MetricPoint)
    assert kept.labels == {"host": "b"}


def test_a_forgotten_series_resolves_its_alert(tmp_path: Path) -> None:
    cat = catalog(tmp_path, "{kind: metric, name: orders, forget_after: 1d}")
    pipeline = Pipeline(cat, tmp_path / "data", tmp_path / "out")
    pipeline.ingest(json.dumps([metric(0, 500.0, "a"), metric(0, 50.0, "b")]).encode(), "in:1")
    resolved = 0
    for hour in range(1, 26):  # host a falls silent while firing; b goes on
        counts = pipeline.ingest(json.dumps(metric(hour, 50.0, "b")).encode(), f"in:{hour + 1}")
        resolved += counts.resolved
        assert resolved == (hour == 25)  # ticks follow the events: 25 h without a point
    pipeline.close()
    alerts = jsonl(tmp_path / "out" / "alerts.jsonl")
    assert [(a["status"], a["labels"]["host"]) for a in alerts] == [
        ("firing", "a"),
        ("resolved", "a"),
    ]
    anomalies = jsonl(tmp_path / "out" / "anomalies.jsonl")
    assert [(a["state"], a["kind"]) for a in anomalies] == [
        ("anomalous", "threshold"),
        ("recovered", "forgotten"),
    ]
