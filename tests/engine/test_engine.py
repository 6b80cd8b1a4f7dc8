"""The engine: routing, anomalies and recoveries, absence, joins, freshness, state."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest

from lupus_stream.contracts import (
    Anomaly,
    InputRecord,
    Label,
    MetricPoint,
    PredictionLog,
    SourceLanded,
)
from lupus_stream.detection import registry
from lupus_stream.detection.base import Verdict
from lupus_stream.engine import Engine, Outcome
from lupus_stream.engine.join import LabelJoin, is_correct
from lupus_stream.engine.series import Series
from lupus_stream.monitors import Catalog, load_catalog

T0 = datetime(2024, 5, 1, tzinfo=UTC)  # a Wednesday, 00:00 UTC
HOUR = 3600.0
DAY = 86400.0


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def catalog(tmp_path: Path, monitors: str, product: str = "shop", *more: str) -> Catalog:
    """A catalog of one product file (plus `more` whole files), loaded like the real ones."""
    directory = tmp_path / "detectors"
    directory.mkdir(parents=True, exist_ok=True)
    body = f"product: {product}\nowner: team\nreceiver: oncall\nmonitors:\n"
    body += textwrap.indent(textwrap.dedent(monitors).strip() + "\n", "  ")
    (directory / f"{product}.yaml").write_text(body, encoding="utf-8")
    for i, text in enumerate(more):
        (directory / f"more{i}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return load_catalog(directory)


def metric(
    hours: float, value: float | None, name: str = "latency", product: str = "shop", **labels: str
) -> MetricPoint:
    return MetricPoint(product=product, name=name, ts=at(hours), value=value, labels=labels)


def prediction(
    hours: float,
    request_id: str,
    prediction: Any = "a",
    features: dict[str, Any] | None = None,
    segment: dict[str, str] | None = None,
    model: str = "m",
) -> PredictionLog:
    return PredictionLog(
        product="shop",
        model=model,
        model_version="1",
        request_id=request_id,
        ts=at(hours),
        features=features or {},
        prediction=prediction,
        segment=segment or {},
    )


def label(hours: float, request_id: str, value: Any, model: str = "m") -> Label:
    return Label(product="shop", model=model, request_id=request_id, ts=at(hours), label=value)


def landed(hours: float, partition: str, rows: int = 1000) -> SourceLanded:
    return SourceLanded(
        product="shop", source="clicks", partition=partition, row_count=rows, landed_at=at(hours)
    )


def run(engine: Engine, records: Iterable[InputRecord]) -> Outcome:
    out = engine.process_many(records)
    assert out.errors == []
    return out


def states(anomalies: Iterable[Anomaly]) -> list[tuple[str, str, str]]:
    return [(a.monitor, a.state, a.kind) for a in anomalies]


def normal_series(seed: int, n: int, level: float = 100.0) -> list[float]:
    rng = np.random.default_rng(seed)
    return [float(x) for x in rng.normal(level, 1.0, n)]


# -- routing ----------------------------------------------------------------------------

ROUTING = """
- name: eu_us_prod
  signal: {kind: metric, name: latency, labels: {region: "=~eu|us", env: prod}}
  detector: {kind: threshold, upper: 100}
- name: not_canary
  signal: {kind: metric, name: latency, labels: {stage: "!=canary"}}
  detector: {kind: threshold, upper: 100}
- name: no_test
  signal: {kind: metric, name: latency, labels: {region: "!~test.*"}}
  detector: {kind: threshold, upper: 100}
"""

OTHER_PRODUCT = """
product: other
owner: team
receiver: oncall
monitors:
  - name: eu_us_prod
    signal: {kind: metric, name: latency}
    detector: {kind: threshold, upper: 100}
"""


def test_routing_by_name_and_label_matchers(tmp_path: Path) -> None:
    seen: list[tuple[str, dict[str, str]]] = []
    engine = Engine(
        catalog(tmp_path, ROUTING, "shop", OTHER_PRODUCT),
        on_verdict=lambda s, t, v: seen.append((s.monitor.id, s.labels)),
    )
    assert engine.products == {"shop", "other"}
    records = [
        metric(0, 150, region="eu", env="prod"),
        metric(1, 150, region="us", env="prod"),
        metric(2, 150, region="eu", env="prod"),  # same label set: same series
        metric(3, 150, region="asia", env="prod"),  # region does not match
        metric(4, 150, region="eu", env="dev"),  # env does not match
        metric(5, 150, region="eu"),  # env missing
        metric(6, 150, region="test-7", env="prod", stage="canary"),
        metric(7, 150, name="throughput", region="eu", env="prod"),  # other metric
        metric(8, 150, product="other", region="eu", env="prod"),  # other product
        metric(9, 150, product="ghost", region="eu", env="prod"),  # unknown product
    ]
    out = run(engine, records)

    keys = sorted(engine.series)
    assert keys == [
        "other/eu_us_prod{env=prod,region=eu}",
        "shop/eu_us_prod{env=prod,region=eu}",
        "shop/eu_us_prod{env=prod,region=us}",
        "shop/no_test{env=dev,region=eu}",
        "shop/no_test{env=prod,region=asia}",
        "shop/no_test{env=prod,region=eu}",
        "shop/no_test{env=prod,region=us}",
        "shop/no_test{region=eu}",
        "shop/not_canary{env=dev,region=eu}",
        "shop/not_canary{env=prod,region=asia}",
        "shop/not_canary{env=prod,region=eu}",
        "shop/not_canary{env=prod,region=us}",
        "shop/not_canary{region=eu}",
    ]
    by_monitor: dict[str, list[dict[str, str]]] = {}
    for a in out.anomalies:
        by_monitor.setdefault(a.monitor, []).append(a.series)
        assert a.product == a.monitor.split("/")[0]
    assert by_monitor["shop/eu_us_prod"] == [
        {"region": "eu", "env": "prod"},
        {"region": "us", "env": "prod"},
        {"region": "eu", "env": "prod"},
    ]
    assert by_monitor["other/eu_us_prod"] == [{"region": "eu", "env": "prod"}]
    assert len(by_monitor["shop/not_canary"]) == 6  # all shop latency records but the canary
    assert len(by_monitor["shop/no_test"]) == 6  # all shop latency records but test-7
    assert len(seen) == len(out.anomalies)  # the threshold judges every point


# -- a spike and its recovery -----------------------------------------------------------

SPIKE = """
- name: latency_p99
  signal: {kind: metric, name: latency, labels: {region: eu}}
  detector: {kind: robust}
"""


def test_label_sets_that_read_alike_are_different_series(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, "- name: any\n  signal: {kind: metric, name: latency}\n"))
    run(
        engine,
        [
            metric(0, 1.0, a="x,b=y"),
            metric(0, 1.0, a="x", b="y"),
            metric(0, 1.0, a='q"'),
            metric(0, 1.0, a="q", b='"'),
            metric(0, 1.0, a="eu-west-1"),
        ],
    )
    assert list(engine.series) == [
        'shop/any{a="x,b=y"}',
        "shop/any{a=x,b=y}",
        'shop/any{a="q\\""}',
        'shop/any{a=q,b="\\""}',
        "shop/any{a=eu-west-1}",  # plain values as they are: keys from before stay the same
    ]


def spike_records() -> list[MetricPoint]:
    values = normal_series(seed=7, n=30)
    values[24] = 160.0  # a spike, then normal points again
    return [metric(h, v, region="eu", host="a") for h, v in enumerate(values)]


def test_spike_yields_anomaly_then_one_recovery(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, SPIKE))
    outcomes = [engine.process(r) for r in spike_records()]
    assert all(o.errors == [] for o in outcomes)
    assert all(o.anomalies == [] for o in outcomes[:24])
    (spike,) = outcomes[24].anomalies
    assert spike.state == "anomalous"
    assert spike.kind == "outlier"
    assert spike.detector == "robust"
    assert spike.monitor == "shop/latency_p99"
    assert spike.product == "shop"
    assert spike.series == {"region": "eu", "host": "a"}
    assert spike.ts == at(24)
    assert spike.value == 160.0
    assert spike.expected is not None and abs(spike.expected - 100.0) < 2.0
    assert 0.0 <= spike.score <= 1.0 and spike.score > 0.99
    assert len(spike.id) == 20
    (recovered,) = outcomes[25].anomalies
    assert recovered.state == "recovered"
    assert recovered.ts == at(25)
    assert 0.0 <= recovered.score <= 1.0
    assert recovered.id != spike.id
    assert all(o.anomalies == [] for o in outcomes[26:])


def test_anomaly_ids_are_deterministic(tmp_path: Path) -> None:
    cat = catalog(tmp_path, SPIKE)
    first = run(Engine(cat), spike_records()).anomalies
    second = run(Engine(cat), spike_records()).anomalies
    assert len(first) == 2
    assert [a.id for a in first] == [a.id for a in second]
    assert first == second


# -- absence ----------------------------------------------------------------------------

ABSENT = """
- name: hourly_orders
  signal: {kind: metric, name: orders, absent_after: 3h}
  detector: {kind: robust}
"""


def test_missing_data_once_then_recovered(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, ABSENT))
    values = normal_series(seed=3, n=12)
    run(engine, [metric(h, v, name="orders") for h, v in enumerate(values)])
    last = 11.0
    assert engine.tick(at(last + 2.5)).anomalies == []  # within absent_after
    out = engine.tick(at(last + 3.5))
    assert out.errors == []
    (missing,) = out.anomalies
    assert (missing.state, missing.kind, missing.monitor) == (
        "anomalous",
        "missing_data",
        "shop/hourly_orders",
    )
    assert missing.ts == at(last + 3.5)
    assert missing.score == 1.0
    assert missing.series == {}
    # reported once, however often the clock ticks
    assert engine.tick(at(last + 5)).anomalies == []
    assert engine.tick((T0 + timedelta(hours=last + 9)).timestamp()).anomalies == []
    # a null point is not data: the series stays absent
    assert run(engine, [metric(last + 9.5, None, name="orders")]).anomalies == []
    back = run(engine, [metric(last + 10, 100.2, name="orders")]).anomalies
    assert states(back) == [("shop/hourly_orders", "recovered", "outlier")]
    assert run(engine, [metric(last + 11, 99.8, name="orders")]).anomalies == []
    # and it can go missing again
    assert states(engine.tick(at(last + 15)).anomalies) == [
        ("shop/hourly_orders", "anomalous", "missing_data")
    ]


def test_no_absence_check_without_absent_after(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, SPIKE))
    run(engine, spike_records()[:10])
    assert engine.tick(at(1000)).anomalies == []


# -- feature drift ----------------------------------------------------------------------

DRIFT = """
- name: session_length_drift
  signal: {kind: feature, model: m, feature: session_length}
  detector: {kind: drift, reference_size: 300, window: 300}
- name: country_drift
  signal: {kind: feature, model: m, feature: country}
  detector: {kind: drift, reference_size: 300, window: 300}
- name: prediction_drift
  signal: {kind: prediction, model: m}
  detector: {kind: drift, reference_size: 300, window: 300}
"""


def test_feature_drift_through_prediction_logs(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    engine = Engine(catalog(tmp_path, DRIFT))
    countries = ["de", "fr", "es"]
    records = []
    for i in range(900):
        shifted = i >= 600  # reference, one normal window, then a shifted window
        records.append(
            prediction(
                i / 60,
                f"r{i}",
                prediction=str(rng.choice(["young", "old"])),
                features={
                    "session_length": float(rng.normal(2.0 if shifted else 0.0, 1.0)),
                    "country": str(rng.choice(countries)),
                },
            )
        )
    outcomes = [engine.process(r) for r in records]
    assert all(o.errors == [] for o in outcomes)
    assert all(o.anomalies == [] for o in outcomes[:899])
    (drift,) = outcomes[899].anomalies
    assert drift.monitor == "shop/session_length_drift"
    assert (drift.state, drift.kind, drift.detector) == ("anomalous", "data_drift", "drift")
    assert drift.series == {"model": "m", "feature": "session_length"}
    assert drift.value is not None and drift.value > 0.2
    assert 0.99 <= drift.score <= 1.0
    assert "shop/prediction_drift{model=m}" in engine.series


# -- label join: accuracy and fairness ----------------------------------------------------

ACCURACY = """
- name: accuracy
  signal: {kind: accuracy, model: m, join_within: 2d}
  detector: {kind: accuracy, window: 100, reference_windows: 1}
- name: fairness_region
  signal: {kind: fairness, model: m, group: region, join_within: 2d}
  detector: {kind: fairness, window: 200, min_group_size: 30}
"""


def accuracy_stream(labels_first: bool, seed: int = 5, spacing: float = 0.1) -> list[InputRecord]:
    """100 outcomes at 90 % accuracy, then 100 at 50 %; regions share them evenly."""
    rng = np.random.default_rng(seed)
    records: list[InputRecord] = []
    for i in range(200):
        accuracy = 0.9 if i < 100 else 0.5
        right = bool(rng.random() < accuracy) if i % 10 else i < 100
        truth = str(rng.choice(["a", "b"]))
        guess = truth if right else ("b" if truth == "a" else "a")
        segment = {"region": ["eu", "us"][i % 2]}
        pred = prediction(i * spacing, f"r{i}", guess, segment=segment)
        lab = label(i * spacing + 1, f"r{i}", truth)
        records.extend([lab, pred] if labels_first else [pred, lab])
    return records


@pytest.mark.parametrize("labels_first", [False, True], ids=["predictions-first", "labels-first"])
def test_accuracy_decay_through_label_join(tmp_path: Path, labels_first: bool) -> None:
    outcomes: list[Verdict] = []

    def keep(series: Series, t: float, verdict: Verdict) -> None:
        if series.monitor.name == "accuracy":
            outcomes.append(verdict)

    engine = Engine(catalog(tmp_path, ACCURACY), on_verdict=keep)
    out = run(engine, accuracy_stream(labels_first))
    assert len(outcomes) == 2  # one reference window, one judged window
    assert outcomes[0].value is not None and outcomes[0].value >= 0.8
    decay = [a for a in out.anomalies if a.monitor == "shop/accuracy"]
    assert states(decay) == [("shop/accuracy", "anomalous", "accuracy_decay")]
    assert decay[0].series == {"model": "m"}
    assert decay[0].value is not None and decay[0].value < 0.7
    assert decay[0].expected is not None and decay[0].expected >= 0.8
    assert 0.999 <= decay[0].score <= 1.0
    # the join is drained
    assert len(engine._joins["shop/m"]) == 0


def test_both_join_orders_give_the_same_verdicts(tmp_path: Path) -> None:
    cat = catalog(tmp_path, ACCURACY)
    found: list[list[tuple[str, float | None]]] = []
    for labels_first in (False, True):
        seen: list[tuple[str, float | None]] = []
        found.append(seen)
        engine = Engine(cat, on_verdict=lambda s, t, v, out=seen: out.append((s.key, v.value)))
        run(engine, accuracy_stream(labels_first))
    assert found[0] == found[1]
    assert len(found[0]) == 3  # two accuracy windows, one fairness window


def test_fairness_gap_by_segment_attribute(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, ACCURACY))
    records: list[InputRecord] = []
    for i in range(200):
        region = "eu" if i % 2 else "us"
        right = i % 20 != 1 if region == "eu" else i % 4 == 0  # eu 90 %, us 50 %
        records.append(prediction(i / 10, f"r{i}", "a", segment={"region": region}))
        records.append(label(i / 10 + 0.5, f"r{i}", "a" if right else "b"))
    out = run(engine, records)
    gaps = [a for a in out.anomalies if a.monitor == "shop/fairness_region"]
    assert states(gaps) == [("shop/fairness_region", "anomalous", "fairness_gap")]
    assert gaps[0].series == {"model": "m", "group": "region"}
    assert gaps[0].value == pytest.approx(0.4)
    assert "best eu" in gaps[0].detail and "worst us" in gaps[0].detail


def test_unmatched_entries_expire_with_the_watermark(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, ACCURACY))
    run(engine, [prediction(0, "old"), label(1, "orphan", "a"), prediction(60, "new")])
    assert len(engine._joins["shop/m"]) == 3
    engine.tick(at(60))  # 2d join window: entries from hour 0 and 1 are older than hour 12
    assert len(engine._joins["shop/m"]) == 1
    assert run(engine, [label(61, "old", "a")]).anomalies == []


@pytest.mark.parametrize(
    ("predicted", "actual", "correct"),
    [
        ("cat", "cat", 1.0),
        ("cat", "dog", 0.0),
        ("3", 3.0, 1.0),  # a JSON label 3 decodes as 3.0
        (["7", "3"], 3.0, 1.0),  # a ranking holding the numeric item id
        (["7", "3"], 4.0, 0.0),
        (["x"], "x", 1.0),
        (0.8, 1.0, 1.0),
        (0.3, 1.0, 0.0),
        (0.3, 0.0, 1.0),
        (0.3, False, 1.0),  # a score against a boolean label is read at 0.5 too
        (0.7, True, 1.0),
        (True, 1.0, 1.0),
        (False, True, 0.0),
        ("false", True, 0.0),
        ("False", False, 1.0),
        (10.5, 10.0, 1.0),  # regression: within 10 %
        (12.0, 10.0, 0.0),
    ],
)
def test_is_correct(predicted: Any, actual: Any, correct: float) -> None:
    assert is_correct(predicted, actual) == correct


# -- source freshness -------------------------------------------------------------------

FRESHNESS = """
- name: clicks_landed
  signal: {kind: source, source: clicks, expected_by: "06:00", timezone: UTC}
"""


def test_stale_source_then_recovered(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, FRESHNESS))
    for day in range(5):
        run(engine, [landed(day * 24 + 3, f"2024-05-0{day + 1}")])
        assert engine.tick(at(day * 24 + 7)).anomalies == []
        assert engine.tick(at(day * 24 + 23)).anomalies == []
    missed = 5 * 24  # nothing lands on day 6
    assert engine.tick(at(missed + 5.9)).anomalies == []  # before the deadline
    out = engine.tick(at(missed + 6.5))
    (stale,) = out.anomalies
    assert (stale.state, stale.kind, stale.detector) == ("anomalous", "stale_source", "freshness")
    assert stale.monitor == "shop/clicks_landed"
    assert stale.series == {"source": "clicks"}
    assert stale.score == 1.0
    assert stale.value == pytest.approx(4 * 24 + 27.5 - 4 * 24)  # hours since the landing
    assert engine.tick(at(missed + 8)).anomalies == []  # once per missed day
    (back,) = run(engine, [landed(missed + 9, "2024-05-06")]).anomalies
    assert (back.state, back.kind) == ("recovered", "stale_source")
    assert engine.tick(at(missed + 30)).anomalies == []  # day 7 landed nothing yet, 06:00 not past


def test_freshness_deadline_in_a_local_timezone(tmp_path: Path) -> None:
    monitors = """
    - name: clicks_landed
      signal: {kind: source, source: clicks, expected_by: "08:00", timezone: Asia/Tokyo}
      detector: {kind: freshness, min_rows: 10}
    """
    engine = Engine(catalog(tmp_path, monitors))
    run(engine, [landed(-2, "2024-04-30")])  # 07:00 in Tokyo on May 1st
    # 08:00 in Tokyo is 23:00 UTC the day before
    assert engine.tick(at(22.5)).anomalies == []
    assert states(engine.tick(at(23.5)).anomalies) == [
        ("shop/clicks_landed", "anomalous", "stale_source")
    ]
    (empty,) = run(engine, [landed(24, "2024-05-02", rows=3)]).anomalies
    assert (empty.state, empty.kind) == ("anomalous", "empty_partition")


# -- a failing detector ---------------------------------------------------------------------

TWO_ON_ONE_METRIC = """
- name: fragile
  signal: {kind: metric, name: latency}
- name: sturdy
  signal: {kind: metric, name: latency}
  detector: {kind: threshold, upper: 100}
"""


def test_detector_that_raises_is_reported_and_others_go_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(catalog(tmp_path, TWO_ON_ONE_METRIC))
    run(engine, [metric(0, 50.0)])
    fragile = engine.series["shop/fragile"]

    def broken(t: float, x: Any) -> Verdict | None:
        raise RuntimeError("boom")

    monkeypatch.setattr(fragile.detector, "update", broken)
    out = engine.process(metric(1, 500.0))
    [error] = out.errors
    assert error.rule == "detector failure"
    assert "shop/fragile" in error.reason
    assert "seasonal" in error.reason and "RuntimeError: boom" in error.reason
    assert states(out.anomalies) == [("shop/sturdy", "anomalous", "threshold")]
    assert fragile.last_seen == at(0).timestamp()  # a failed update is not data
    monkeypatch.undo()
    assert run(engine, [metric(2, 50.0)]).anomalies[0].state == "recovered"


def test_check_that_raises_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(catalog(tmp_path, FRESHNESS + ABSENT))
    run(engine, [landed(3, "2024-05-01"), metric(3, 10.0, name="orders")])
    source = engine.series["shop/clicks_landed{source=clicks}"]

    def broken(now: float) -> Verdict | None:
        raise ValueError("bad clock")

    monkeypatch.setattr(source.detector, "check", broken)
    out = engine.tick(at(40))
    [error] = out.errors
    assert error.rule == "detector failure"
    assert "shop/clicks_landed" in error.reason and "bad clock" in error.reason
    assert states(out.anomalies) == [("shop/hourly_orders", "anomalous", "missing_data")]


# -- state ------------------------------------------------------------------------------

CAPPED = """
- name: capped
  signal: {kind: metric, name: latency, max_series: 2}
  detector: {kind: threshold, upper: 100}
- name: open
  signal: {kind: metric, name: latency}
  detector: {kind: threshold, upper: 100}
"""


def test_label_sets_beyond_max_series_are_refused_with_a_reason(tmp_path: Path) -> None:
    cat = catalog(tmp_path, CAPPED)
    engine = Engine(cat)
    run(engine, [metric(0, 50.0, region="eu"), metric(0, 50.0, region="us")])
    out = engine.process(metric(1, 500.0, region="ap"))
    [error] = out.errors
    assert error.rule == "series limit"
    assert "shop/capped" in error.reason and "region=ap" in error.reason
    assert "has 2 series, max_series is 2" in error.reason
    # the other monitor takes the label set; the tracked ones go on
    assert states(out.anomalies) == [("shop/open", "anomalous", "threshold")]
    out = engine.process(metric(1, 500.0, region="eu"))
    assert out.errors == []
    assert states(out.anomalies) == [
        ("shop/capped", "anomalous", "threshold"),
        ("shop/open", "anomalous", "threshold"),
    ]
    assert sorted(s.labels["region"] for s in engine.series.values()) == [
        "ap",
        "eu",
        "eu",
        "us",
        "us",
    ]
    # the limit holds after a restart
    restored = Engine(cat)
    restored.restore(engine.snapshot())
    [error] = restored.process(metric(2, 50.0, region="ap")).errors
    assert error.rule == "series limit"
    assert restored.process(metric(2, 50.0, region="us")).errors == []


def test_restored_series_are_kept_when_max_series_is_lowered(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path / "before", CAPPED))
    run(engine, [metric(0, 50.0, region="eu"), metric(0, 50.0, region="us")])
    lowered = Engine(catalog(tmp_path / "after", CAPPED.replace("max_series: 2", "max_series: 1")))
    assert lowered.restore(engine.snapshot()) == []
    out = run(lowered, [metric(1, 500.0, region="eu"), metric(1, 500.0, region="us")])
    assert out.errors == []
    assert len(out.anomalies) == 4
    [error] = lowered.process(metric(1, 50.0, region="ap")).errors
    assert "has 2 series, max_series is 1" in error.reason


FORGETFUL = """
- name: orders
  signal: {kind: metric, name: orders, absent_after: 3h, forget_after: 2d, max_series: 2}
  detector: {kind: robust}
- name: quiet
  signal: {kind: metric, name: visits, forget_after: 2d}
  detector: {kind: robust, min_history: 5}
"""


def test_series_without_points_past_forget_after_are_dropped(tmp_path: Path) -> None:
    engine = Engine(catalog(tmp_path, FORGETFUL))
    values = normal_series(seed=4, n=60)
    run(engine, [metric(h, values[h], name="orders", host="a") for h in range(12)])
    run(engine, [metric(h, values[h], name="visits") for h in range(12)])
    missing = engine.tick(at(15)).anomalies
    assert states(missing) == [("shop/orders", "anomalous", "missing_data")]
    # host b keeps the watermark moving; a and the visits series send nothing more
    for h in range(12, 60):
        run(engine, [metric(h, values[h], name="orders", host="b")])
        assert engine.tick(at(h)).anomalies == []
    # hour 60: 49 h without a point from host a and from visits (forget_after 2d)
    run(engine, [metric(60, values[59], name="orders", host="b")])
    out = engine.tick(at(60))
    [gone] = out.anomalies
    assert (gone.state, gone.kind, gone.series) == ("recovered", "forgotten", {"host": "a"})
    assert "forget_after" in gone.detail
    assert sorted(engine.series) == ["shop/orders{host=b}"]  # visits went without a word
    # room again for a new label set; a forgotten series comes back as a new one
    assert run(engine, [metric(61, 100.0, name="orders", host="c")]).errors == []
    assert run(engine, [metric(61, 100.0, name="visits")]).anomalies == []
    fresh = registry.make("robust", {"min_history": 5})
    fresh.update(at(61).timestamp(), 100.0)
    assert engine.series["shop/quiet"].detector.to_bytes() == fresh.to_bytes()
    assert engine.tick(at(62)).anomalies == []


def test_a_clock_ahead_of_the_data_forgets_nothing(tmp_path: Path) -> None:
    """Forgetting follows the newest event, so replaying old data on a wall clock keeps
    its series."""
    engine = Engine(catalog(tmp_path, FORGETFUL))
    run(engine, [metric(h, 100.0 + h % 3, name="visits") for h in range(12)])
    assert engine.tick(at(24 * 365)).anomalies == []
    assert list(engine.series) == ["shop/quiet"]


def test_last_fed_survives_a_snapshot_and_defaults_to_last_seen(tmp_path: Path) -> None:
    cat = catalog(tmp_path, FORGETFUL)
    engine = Engine(cat)
    run(engine, [metric(0, 100.0, name="visits"), metric(5, None, name="visits")])
    restored = Engine(cat)
    restored.restore(engine.snapshot())
    assert restored.series["shop/quiet"].last_fed == at(5).timestamp()
    assert restored.series["shop/quiet"].last_seen == at(0).timestamp()
    # a snapshot from before `last_fed` existed: series entries one field shorter; a
    # series with no value at all is kept until it gets a point
    run(engine, [metric(6, None, name="visits", kind="empty")])
    old = msgspec.msgpack.decode(engine.snapshot())
    old["series"] = [entry[:-1] for entry in old["series"]]
    older = Engine(cat)
    older.restore(msgspec.msgpack.encode(old))
    assert older.series["shop/quiet"].last_fed == at(0).timestamp()
    assert older.series["shop/quiet{kind=empty}"].last_fed is None  # kept until fed
    assert older.tick(at(7)).anomalies == [] and len(older.series) == 2
    assert older.restore(older.snapshot()) == [] and older.snapshot() == older.snapshot()


def test_a_series_behind_the_others_is_not_forgotten_while_it_sends(tmp_path: Path) -> None:
    """Idle is measured in the engine's progress: a backfill 40 days behind the live
    series keeps its state."""
    engine = Engine(catalog(tmp_path, FORGETFUL))
    for h in range(100):
        run(engine, [metric(h + 40 * 24, 100.0, name="orders", host="live")])
        run(engine, [metric(h, 100.0 + h % 3, name="orders", host="backfill")])
        engine.tick(at(h + 40 * 24))
    assert sorted(engine.series) == ["shop/orders{host=backfill}", "shop/orders{host=live}"]
    # its detector kept its history: an outlier is one at once
    spike = run(engine, [metric(100, 5000.0, name="orders", host="backfill")]).anomalies
    assert [(a.series, a.state) for a in spike] == [({"host": "backfill"}, "anomalous")]


EVERYTHING = SPIKE + ABSENT + ACCURACY + FRESHNESS


def mixed_stream() -> Iterator[tuple[InputRecord | None, float]]:
    """(record, tick time): records of every kind, with a tick now and then (record None).

    Labels trail their predictions by seven requests, so the join always holds some.
    """
    values = normal_series(seed=21, n=96)
    values[30], values[70] = 150.0, 40.0
    joined = accuracy_stream(labels_first=False, seed=9, spacing=0.2)
    predictions, labels = joined[0::2], joined[1::2]
    outcomes: list[InputRecord] = []
    for i, pred in enumerate(predictions):
        outcomes.append(pred)
        if i >= 7:
            outcomes.append(labels[i - 7])
    outcomes.extend(labels[-7:])
    for hour in range(96):
        yield metric(hour, values[hour], region="eu"), 0.0
        if not 10 <= hour % 24 < 18:  # the orders metric pauses every day for a few hours
            yield metric(hour, 20.0 + hour % 3, name="orders"), 0.0
        if hour % 24 == 3 and hour < 48:  # the source stops landing on day 3
            yield landed(hour, f"day{hour // 24}"), 0.0
        yield from ((record, 0.0) for record in outcomes[hour * 5 : hour * 5 + 5])
        if hour % 3 == 2:
            yield None, at(hour + 0.5).timestamp()


def replay(engine: Engine, items: Iterable[tuple[InputRecord | None, float]]) -> list[Anomaly]:
    anomalies: list[Anomaly] = []
    for record, now in items:
        out = engine.process(record) if record is not None else engine.tick(now)
        assert out.errors == []
        anomalies.extend(out.anomalies)
    return anomalies


def test_snapshot_restore_continues_like_an_uninterrupted_engine(tmp_path: Path) -> None:
    cat = catalog(tmp_path, EVERYTHING)
    items = list(mixed_stream())

    whole_verdicts: list[tuple[str, float, Verdict]] = []
    whole = Engine(cat, on_verdict=lambda s, t, v: whole_verdicts.append((s.key, t, v)))
    expected = replay(whole, items)
    kinds = {a.kind for a in expected}
    assert {"outlier", "missing_data", "accuracy_decay", "stale_source"} <= kinds

    # cut everywhere near something stateful: after each tick and around each anomaly
    prefix = Engine(cat)
    cuts, covered = [], set()
    for i, item in enumerate(items, start=1):
        out = replay(prefix, [item])
        if item[0] is None or out or i % 50 == 0:
            cuts.append(i)
            covered |= {"absent" for s in prefix.series.values() if s.absent}
            covered |= {"anomalous" for s in prefix.series.values() if s.anomalous_since}
            covered |= {"pending" for j in prefix._joins.values() if len(j)}
    assert covered == {"absent", "anomalous", "pending"}

    for cut in cuts:
        first = Engine(cat)
        before = replay(first, items[:cut])
        data = first.snapshot()
        resumed_verdicts: list[tuple[str, float, Verdict]] = []
        resumed = Engine(
            cat, on_verdict=lambda s, t, v, out=resumed_verdicts: out.append((s.key, t, v))
        )
        assert resumed.restore(data) == []
        assert resumed.watermark == first.watermark
        after = replay(resumed, items[cut:])
        assert before + after == expected, f"cut at item {cut}"
        tail = whole_verdicts[len(whole_verdicts) - len(resumed_verdicts) :]
        assert resumed_verdicts == tail, f"cut at item {cut}"
        assert resumed.snapshot() == whole.snapshot()


def test_restore_notes_removed_and_changed_monitors(tmp_path: Path) -> None:
    old = Engine(catalog(tmp_path / "old", SPIKE + ABSENT + ACCURACY))
    run(old, [metric(0, 1.0, region="eu"), metric(0, 1.0, name="orders")])
    run(old, [prediction(0, "r1")])
    data = old.snapshot()

    changed = """
    - name: hourly_orders
      signal: {kind: metric, name: orders, absent_after: 3h}
      detector: {kind: robust, threshold: 6}
    - name: accuracy
      signal: {kind: accuracy, model: m, join_within: 12h}
      detector: {kind: accuracy, window: 100, reference_windows: 1}
    """
    new = Engine(catalog(tmp_path / "new", changed))
    notes = new.restore(data)
    assert notes == [
        "shop/latency_p99: monitor no longer defined",
        "shop/hourly_orders: detector parameters changed, starting afresh",
    ]
    assert "shop/latency_p99{region=eu}" not in new.series
    assert "shop/hourly_orders" not in new.series  # starts afresh, with threshold 6
    assert new._joins["shop/m"].window == 12 * HOUR  # the edited join window applies
    assert len(new._joins["shop/m"]) == 1  # the pending prediction survived


def test_restore_notes_a_changed_detector_kind(tmp_path: Path) -> None:
    old = Engine(catalog(tmp_path / "old", ABSENT))
    run(old, [metric(0, 1.0, name="orders")])
    changed = """
    - name: hourly_orders
      signal: {kind: metric, name: orders}
      detector: {kind: threshold, lower: 0}
    """
    notes = Engine(catalog(tmp_path / "new", changed)).restore(old.snapshot())
    assert notes == ["shop/hourly_orders: detector changed to threshold"]


def test_on_verdict_sees_every_verdict(tmp_path: Path) -> None:
    seen: list[tuple[str, float, Verdict]] = []
    engine = Engine(
        catalog(tmp_path, EVERYTHING), on_verdict=lambda s, t, v: seen.append((s.key, t, v))
    )
    anomalies = replay(engine, mixed_stream())
    assert anomalies
    by_key_time = {(key, t): v for key, t, v in seen}
    assert len(by_key_time) == len(seen)  # one verdict per series and time here
    for a in anomalies:
        key = next(k for k, s in engine.series.items() if s.monitor.id == a.monitor)
        series = engine.series[key]
        assert series.labels == a.series
        verdict = by_key_time[(key, a.ts.timestamp())]
        assert verdict.kind == a.kind
        assert verdict.score == a.score
        if a.state == "anomalous":
            assert verdict.anomalous
    # every point of the robust series got a verdict, warm-up included
    assert sum(1 for key, _, _ in seen if key == "shop/latency_p99{region=eu}") == 96
    # and tick-time verdicts (a missed deadline, missing data) are seen too
    assert any(v.kind == "stale_source" and v.anomalous for _, _, v in seen)
    assert any(v.kind == "missing_data" for _, _, v in seen)


def test_label_join_snapshot_round_trip() -> None:
    join = LabelJoin(DAY)
    assert join.add_prediction("a", 1.0, ["x", "y"], {"region": "eu"}) is None
    assert join.add_label("b", 2.0, True) is None
    restored = LabelJoin.restore(join.snapshot())
    joined = restored.add_label("a", 3.0, "y")
    assert joined is not None
    assert (joined.t, joined.correct, joined.segment) == (3.0, 1.0, {"region": "eu"})
    joined = restored.add_prediction("b", 4.0, 0.9, {})
    assert joined is not None and (joined.t, joined.correct) == (2.0, 1.0)
    assert len(restored) == 0
