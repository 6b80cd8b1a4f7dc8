"""Routes decoded records to the monitors that select them and emits anomalies.

No I/O and no clocks: event time comes from records, and `tick(now)` drives the checks
that fire on the absence of data (a metric that stopped, a table that did not land).
A detector that raises is reported in the outcome and the other monitors go on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from lupus_stream.contracts import (
    Anomaly,
    InputRecord,
    Label,
    MetricPoint,
    PredictionLog,
    SourceLanded,
)
from lupus_stream.detection import registry
from lupus_stream.detection.base import StateError, Verdict
from lupus_stream.durations import parse_duration
from lupus_stream.engine.join import JoinSnapshot, LabelJoin
from lupus_stream.engine.series import Series, SeriesSnapshot, series_key
from lupus_stream.monitors import (
    AccuracySignal,
    Catalog,
    FairnessSignal,
    FeatureSignal,
    MetricSignal,
    Monitor,
    PredictionSignal,
    SourceSignal,
)
from lupus_stream.monitors.matchers import compile_matchers

SNAPSHOT_VERSION = 1


@dataclass(slots=True)
class Outcome:
    anomalies: list[Anomaly] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class EngineSnapshot(msgspec.Struct):
    version: int
    watermark: float | None
    series: list[SeriesSnapshot]
    joins: dict[str, JoinSnapshot]


def _prediction_value(prediction: Any) -> Any:
    """What a prediction-drift detector sees: lists (rankings) by their top item."""
    if isinstance(prediction, list):
        return prediction[0] if prediction else None
    return prediction


class Engine:
    """The detection engine for one catalog of monitors."""

    def __init__(
        self, catalog: Catalog, on_verdict: Callable[[Series, float, Verdict], None] | None = None
    ) -> None:
        self.catalog = catalog
        self.on_verdict = on_verdict
        self.series: dict[str, Series] = {}
        self.watermark: float | None = None
        self._metric: dict[tuple[str, str], list[tuple[Monitor, Any]]] = defaultdict(list)
        self._feature: dict[tuple[str, str], list[Monitor]] = defaultdict(list)
        self._prediction: dict[tuple[str, str], list[Monitor]] = defaultdict(list)
        self._outcome: dict[tuple[str, str], list[Monitor]] = defaultdict(list)
        self._source: dict[tuple[str, str], list[Monitor]] = defaultdict(list)
        self._joins: dict[str, LabelJoin] = {}
        self._absent_after: dict[str, float] = {}
        for monitor in catalog.monitors:
            self._route(monitor)

    @property
    def products(self) -> set[str]:
        return set(self.catalog.products)

    def _route(self, monitor: Monitor) -> None:
        signal, product = monitor.signal, monitor.product
        if isinstance(signal, MetricSignal):
            self._metric[(product, signal.name)].append((monitor, compile_matchers(signal.labels)))
            if signal.absent_after:
                self._absent_after[monitor.id] = parse_duration(signal.absent_after)
        elif isinstance(signal, FeatureSignal):
            self._feature[(product, signal.model)].append(monitor)
        elif isinstance(signal, PredictionSignal):
            self._prediction[(product, signal.model)].append(monitor)
        elif isinstance(signal, AccuracySignal | FairnessSignal):
            self._outcome[(product, signal.model)].append(monitor)
            join_key = f"{product}/{signal.model}"
            window = parse_duration(signal.join_within)
            current = self._joins.get(join_key)
            if current is None or current.window < window:
                self._joins[join_key] = LabelJoin(window)
        elif isinstance(signal, SourceSignal):
            self._source[(product, signal.source)].append(monitor)
            self._series_for(monitor, {"source": signal.source})

    @staticmethod
    def _detector_params(monitor: Monitor) -> dict[str, Any]:
        """The detector's parameters; a source signal supplies its deadline and timezone."""
        if isinstance(monitor.signal, SourceSignal):
            return {
                "expected_by": monitor.signal.expected_by,
                "timezone": monitor.signal.timezone,
                **monitor.detector_params,
            }
        return monitor.detector_params

    def _series_for(self, monitor: Monitor, labels: dict[str, str]) -> Series:
        key = series_key(monitor.id, labels)
        series = self.series.get(key)
        if series is None:
            detector = registry.make(monitor.detector_kind, self._detector_params(monitor))
            series = self.series[key] = Series(monitor, labels, detector)
        return series

    # -- records -------------------------------------------------------------------

    def process(self, record: InputRecord) -> Outcome:
        """Feed one record to every monitor that selects it."""
        out = Outcome()
        t = record.event_time.timestamp()
        if self.watermark is None or t > self.watermark:
            self.watermark = t
        if isinstance(record, MetricPoint):
            self._on_metric(record, t, out)
        elif isinstance(record, PredictionLog):
            self._on_prediction(record, t, out)
        elif isinstance(record, Label):
            self._on_label(record, t, out)
        elif isinstance(record, SourceLanded):
            self._on_source(record, t, out)
        return out

    def process_many(self, records: Iterable[InputRecord]) -> Outcome:
        out = Outcome()
        for record in records:
            one = self.process(record)
            out.anomalies.extend(one.anomalies)
            out.errors.extend(one.errors)
        return out

    def _feed(self, series: Series, t: float, x: Any, out: Outcome) -> None:
        try:
            verdict = series.detector.update(t, x)
        except Exception as exc:  # a detector bug must not stop the other monitors
            out.errors.append(
                f"monitor {series.monitor.id}: detector {series.detector.kind} "
                f"failed: {type(exc).__name__}: {exc}"
            )
            return
        if x is not None:  # a point reported as missing does not count as data arriving
            series.last_seen = t if series.last_seen is None else max(series.last_seen, t)
        if self.on_verdict is not None and verdict is not None:
            self.on_verdict(series, t, verdict)
        if series.absent and verdict is not None:
            series.absent = False
            if not verdict.anomalous:
                series.anomalous_since = None
                out.anomalies.append(series.anomaly(t, "recovered", verdict))
                return
        anomaly = series.judge(t, verdict)
        if anomaly is not None:
            out.anomalies.append(anomaly)

    def _on_metric(self, record: MetricPoint, t: float, out: Outcome) -> None:
        for monitor, matches in self._metric.get((record.product, record.name), ()):
            if matches(record.labels):
                self._feed(self._series_for(monitor, dict(record.labels)), t, record.value, out)

    def _on_prediction(self, record: PredictionLog, t: float, out: Outcome) -> None:
        key = (record.product, record.model)
        for monitor in self._feature.get(key, ()):
            assert isinstance(monitor.signal, FeatureSignal)
            feature = monitor.signal.feature
            labels = {"model": record.model, "feature": feature}
            self._feed(self._series_for(monitor, labels), t, record.features.get(feature), out)
        for monitor in self._prediction.get(key, ()):
            value = _prediction_value(record.prediction)
            self._feed(self._series_for(monitor, {"model": record.model}), t, value, out)
        join = self._joins.get(f"{record.product}/{record.model}")
        if join is not None:
            joined = join.add_prediction(record.request_id, t, record.prediction, record.segment)
            if joined is not None:
                self._on_outcome(key, joined.t, joined.correct, joined.segment, out)

    def _on_label(self, record: Label, t: float, out: Outcome) -> None:
        join = self._joins.get(f"{record.product}/{record.model}")
        if join is None:
            return
        joined = join.add_label(record.request_id, t, record.label)
        if joined is not None:
            self._on_outcome((record.product, record.model), t, joined.correct, joined.segment, out)

    def _on_outcome(
        self, key: tuple[str, str], t: float, correct: float, segment: dict[str, str], out: Outcome
    ) -> None:
        model = key[1]
        for monitor in self._outcome.get(key, ()):
            signal = monitor.signal
            if isinstance(signal, FairnessSignal):
                group = segment.get(signal.group, "__missing__")
                labels = {"model": model, "group": signal.group}
                self._feed(self._series_for(monitor, labels), t, (group, correct), out)
            else:
                self._feed(self._series_for(monitor, {"model": model}), t, correct, out)

    def _on_source(self, record: SourceLanded, t: float, out: Outcome) -> None:
        for monitor in self._source.get((record.product, record.source), ()):
            series = self._series_for(monitor, {"source": record.source})
            self._feed(series, t, (record.partition, record.row_count), out)

    # -- time ----------------------------------------------------------------------

    def tick(self, now: datetime | float) -> Outcome:
        """Absence and freshness checks at `now` (event time: usually the watermark)."""
        t = now.timestamp() if isinstance(now, datetime) else now
        out = Outcome()
        for series in self.series.values():
            check = getattr(series.detector, "check", None)
            if check is not None:
                self._check(series, t, check, out)
                continue
            limit = self._absent_after.get(series.monitor.id)
            if limit is None or series.last_seen is None or series.absent:
                continue
            if t - series.last_seen > limit:
                series.absent = True
                if series.anomalous_since is None:
                    series.anomalous_since = t
                verdict = Verdict(
                    score=1.0,
                    anomalous=True,
                    kind="missing_data",
                    detail=f"no data for {(t - series.last_seen) / 3600:.1f} h "
                    f"(expected within {limit / 3600:.1f} h)",
                )
                if self.on_verdict is not None:
                    self.on_verdict(series, t, verdict)
                out.anomalies.append(series.anomaly(t, "anomalous", verdict))
        for join in self._joins.values():
            join.expire(t if self.watermark is None else min(t, self.watermark))
        return out

    def _check(self, series: Series, t: float, check: Any, out: Outcome) -> None:
        try:
            verdict = check(t)
        except Exception as exc:
            out.errors.append(
                f"monitor {series.monitor.id}: detector {series.detector.kind} "
                f"check failed: {type(exc).__name__}: {exc}"
            )
            return
        if self.on_verdict is not None and verdict is not None:
            self.on_verdict(series, t, verdict)
        anomaly = series.judge(t, verdict)
        if anomaly is not None:
            out.anomalies.append(anomaly)

    # -- state ---------------------------------------------------------------------

    def snapshot(self) -> bytes:
        snap = EngineSnapshot(
            SNAPSHOT_VERSION,
            self.watermark,
            [s.snapshot() for s in self.series.values()],
            {k: j.snapshot() for k, j in self._joins.items()},
        )
        return msgspec.msgpack.encode(snap)

    def restore(self, data: bytes) -> list[str]:
        """Load a snapshot; series whose monitor is gone or whose detector changed kind or
        parameters start afresh.

        Returns a note for each series that could not be restored.
        """
        snap = msgspec.msgpack.decode(data, type=EngineSnapshot)
        if snap.version != SNAPSHOT_VERSION:
            raise StateError(f"engine snapshot version {snap.version} is not {SNAPSHOT_VERSION}")
        notes: list[str] = []
        self.watermark = snap.watermark
        monitors = {m.id: m for m in self.catalog.monitors}
        for item in snap.series:
            monitor = monitors.get(item.monitor)
            if monitor is None:
                notes.append(f"{item.monitor}: monitor no longer defined")
                continue
            try:
                detector = registry.restore(item.detector)
            except StateError as exc:
                notes.append(f"{item.monitor}: {exc}")
                continue
            if detector.kind != monitor.detector_kind:
                notes.append(f"{item.monitor}: detector changed to {monitor.detector_kind}")
                continue
            params = registry.parse_params(monitor.detector_kind, self._detector_params(monitor))
            if detector.params != params:
                # state learned under other parameters (a window, bins, a deadline) does
                # not fit the new ones, and keeping the old parameters would ignore the edit
                notes.append(f"{item.monitor}: detector parameters changed, starting afresh")
                continue
            series = Series(monitor, item.labels, detector)
            series.last_seen = item.last_seen
            series.anomalous_since = item.anomalous_since
            series.absent = item.absent
            self.series[series.key] = series
        for key, join in snap.joins.items():
            current = self._joins.get(key)
            if current is not None:
                restored = LabelJoin.restore(join)
                restored.window = current.window  # `join_within` may have been edited
                self._joins[key] = restored
        return notes
