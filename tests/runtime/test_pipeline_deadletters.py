"""What the embedded pipeline keeps when a detector fails, and what it emits when a
detector's numbers go wrong: never a silent drop, never a record nobody can read back."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from lupus_stream.contracts import Anomaly, MetricPoint
from lupus_stream.detection.base import Verdict
from lupus_stream.detection.freshness import FreshnessDetector
from lupus_stream.detection.threshold import ThresholdDetector
from lupus_stream.monitors import Catalog, load_catalog
from lupus_stream.runtimes.pipeline import Pipeline

MONITORS = """\
product: shop
owner: team
receiver: oncall
monitors:
  - name: orders
    signal: {kind: metric, name: orders}
    detector: {kind: threshold, upper: 100}
  - name: clicks_landed
    signal: {kind: source, source: clicks, expected_by: "06:00"}
"""


def catalog(tmp_path: Path) -> Catalog:
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(textwrap.dedent(MONITORS))
    return load_catalog(tmp_path / "detectors")


def metric(hour: int, value: Any, name: str = "orders") -> dict[str, Any]:
    ts = f"2026-03-02T{hour:02d}:00:00Z"
    return {"type": "metric", "product": "shop", "name": name, "ts": ts, "value": value}


def deadletters(out: Path) -> list[dict[str, Any]]:
    path = out / "deadletter.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fail_on_13(self: ThresholdDetector, t: float, x: Any) -> Verdict | None:
    if x == 13.0:
        raise RuntimeError("cannot judge 13")
    return original_update(self, t, x)


original_update = ThresholdDetector.update


def test_a_failing_record_of_a_batch_is_kept_with_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ThresholdDetector, "update", fail_on_13)
    pipeline = Pipeline(catalog(tmp_path), tmp_path / "data", tmp_path / "out")
    batch = [metric(0, 5.0), metric(1, "bad"), metric(2, 13.0), metric(3, 500.0)]
    counts = pipeline.ingest(json.dumps(batch).encode(), "file:x.jsonl:1")
    pipeline.close()
    assert counts.records == 3 and counts.deadlettered == 2 and counts.firing == 1
    rejected, failed = deadletters(tmp_path / "out")
    assert (rejected["record_index"], rejected["field"]) == (1, "value")
    assert failed["record_index"] == 2  # its place in the message, not among the decoded
    assert failed["rule"] == "detector failure"
    assert "cannot judge 13" in failed["reason"] and "monitor shop/orders" in failed["reason"]
    kept = msgspec.json.decode(msgspec.convert(failed["raw"], bytes), type=MetricPoint)
    assert kept.value == 13.0 and kept.ts.hour == 2


def test_a_failing_record_alone_is_kept_as_it_came(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ThresholdDetector, "update", fail_on_13)
    pipeline = Pipeline(catalog(tmp_path), tmp_path / "data", tmp_path / "out")
    data = json.dumps(metric(2, 13.0)).encode()
    assert pipeline.ingest(data, "stdin:1").deadlettered == 1
    pipeline.close()
    [failed] = deadletters(tmp_path / "out")
    assert failed["record_index"] is None
    assert msgspec.convert(failed["raw"], bytes) == data


def test_a_failing_check_at_a_tick_is_a_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: FreshnessDetector, now: float) -> Verdict | None:
        raise ValueError("no clock today")

    monkeypatch.setattr(FreshnessDetector, "check", broken)
    pipeline = Pipeline(catalog(tmp_path), tmp_path / "data", tmp_path / "out")
    counts = pipeline.tick(1_772_438_400.0)  # 2026-03-02T08:00:00Z
    pipeline.close()
    assert counts.deadlettered == 1
    [failed] = deadletters(tmp_path / "out")
    assert failed["source"] == "tick at 2026-03-02T08:00:00+00:00"
    assert "clicks_landed" in failed["reason"] and "no clock today" in failed["reason"]


def test_numbers_json_cannot_carry_never_reach_the_anomaly_or_the_alert_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: ThresholdDetector, t: float, x: Any) -> Verdict | None:
        return Verdict(math.nan, True, math.inf, -math.inf, math.nan, 1.0, detail="overflow")

    monkeypatch.setattr(ThresholdDetector, "update", broken)
    pipeline = Pipeline(catalog(tmp_path), tmp_path / "data", tmp_path / "out")
    counts = pipeline.ingest(json.dumps([metric(0, 5.0), metric(1, 6.0)]).encode(), "x")
    assert counts.anomalies == 2 and counts.firing == 1
    pipeline.tick(1_772_438_400.0)  # reads the alert store back
    assert [a.status for a in pipeline.alerts.active()] == ["firing"]
    pipeline.close()
    lines = (tmp_path / "out" / "anomalies.jsonl").read_text().splitlines()
    first = msgspec.json.decode(lines[0], type=Anomaly)
    assert first.score == 1.0 and first.value is None and first.expected is None
    assert first.lower is None and first.upper == 1.0
    assert first.detail == "overflow (the detector's score was nan)"
