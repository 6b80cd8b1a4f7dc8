"""Routes decoded records to the monitors that select them and emits anomalies.

No I/O and no clocks: event time comes from records, and `tick(now)` drives the checks
that fire on the absence of data (a metric that stopped, a table that did not land).
A detector that raises, or a label set beyond its monitor's `max_series`, is reported in
the outcome and the other monitors go on.
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
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
from lupus_stream.detection.base import StateError, Verdict, VerdictBatch
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
DAY = 86400.0
ROUTE_CACHE_SIZE = 100_000  # distinct (product, name, labels) whose routes are remembered

_PRODUCT = operator.attrgetter("product")
_NAME = operator.attrgetter("name")
_LABELS = operator.attrgetter("labels")
_ITEMS = operator.methodcaller("items")
_TS = operator.attrgetter("ts")
_TZINFO = operator.attrgetter("tzinfo")
_TIMESTAMP = operator.methodcaller("timestamp")  # as `process` calls it (subclasses too)
_PLAIN = frozenset({datetime})
_FIXED_OFFSET = frozenset({timezone})
_VALUE = operator.attrgetter("value")

# outcome entries tagged (record index, rank), see `Engine._tag`
_Tagged = list[tuple[int, int, "Anomaly | EngineError"]]
# (position of the monitor among those of the signal, the monitor, its series labels,
# the series key) for every metric monitor that selects a label set
_Routes = list[tuple[int, Monitor, dict[str, str], str]]


DETECTOR_FAILURE = "detector failure"
SERIES_LIMIT = "series limit"


@dataclass(frozen=True, slots=True)
class EngineError:
    """Why a record (or a tick) could not be handled by one monitor, and the rule broken:
    `DETECTOR_FAILURE` (a detector raised) or `SERIES_LIMIT` (a new label set beyond the
    monitor's `max_series`)."""

    reason: str
    rule: str


@dataclass(slots=True)
class Outcome:
    anomalies: list[Anomaly] = field(default_factory=list)
    errors: list[EngineError] = field(default_factory=list)


class _Group:
    """The points of one batch for one series, in the order `process` would feed them."""

    __slots__ = ("fed", "index", "offset", "parts", "position", "series", "ts", "xs")

    def __init__(self, series: Series, position: int, offset: int = 0) -> None:
        self.series = series
        self.position = position  # of the monitor in the signal's list: orders outcomes
        self.offset = offset  # of the run of records `index` counts in
        self.parts: list[list[int]] = []  # indices of each label set with this series key
        self.index: list[int] = []  # of each point's record, in order
        self.ts: list[float] = []
        self.xs: list[float | None] = []
        self.fed = 0.0  # the watermark `process` would have at the group's last point


class EngineSnapshot(msgspec.Struct):
    version: int
    watermark: float | None
    series: list[SeriesSnapshot]
    joins: dict[str, JoinSnapshot]


def _seconds(stamps: list[datetime]) -> list[float]:
    """`timestamp()` of each stamp, computed once per distinct instant (a batch repeats a
    few of them) when all are plain datetimes with fixed offsets: then equal stamps are
    one instant. With a zone that folds, or a subclass, each is converted on its own."""
    if _PLAIN.issuperset(map(type, stamps)) and _FIXED_OFFSET.issuperset(
        map(type, map(_TZINFO, stamps))
    ):
        seconds = dict.fromkeys(stamps, 0.0)
        for stamp in seconds:
            seconds[stamp] = stamp.timestamp()
        return list(map(seconds.__getitem__, stamps))
    return list(map(_TIMESTAMP, stamps))


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
        self._forget_after: dict[str, float] = {}
        self._routes: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Routes] = {}
        self._series_count: dict[str, int] = defaultdict(int)  # by monitor id
        for monitor in catalog.monitors:
            self._route(monitor)

    @property
    def products(self) -> set[str]:
        return set(self.catalog.products)

    def _route(self, monitor: Monitor) -> None:
        signal, product = monitor.signal, monitor.product
        if isinstance(signal, MetricSignal):
            self._metric[(product, signal.name)].append((monitor, compile_matchers(signal.labels)))
            self._forget_after[monitor.id] = parse_duration(signal.forget_after)
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
            series = self._new_series(monitor, labels, key)
        return series

    def _new_series(self, monitor: Monitor, labels: dict[str, str], key: str) -> Series:
        detector = registry.make(monitor.detector_kind, self._detector_params(monitor))
        series = self.series[key] = Series(monitor, labels, detector, key)
        self._series_count[monitor.id] += 1
        return series

    def _metric_series(self, monitor: Monitor, labels: dict[str, str], key: str) -> Series | None:
        """A metric monitor's series for a label set; None when it would be a new one
        beyond the monitor's `max_series` (a label with unbounded values must not grow a
        worker's memory without bound)."""
        series = self.series.get(key)
        if series is None:
            assert isinstance(monitor.signal, MetricSignal)
            if self._series_count[monitor.id] >= monitor.signal.max_series:
                return None
            series = self._new_series(monitor, dict(labels), key)
        return series

    def _untracked(self, monitor: Monitor, key: str) -> EngineError:
        assert isinstance(monitor.signal, MetricSignal)
        return EngineError(
            f"monitor {monitor.id}: series {key} not tracked: the monitor has "
            f"{self._series_count[monitor.id]} series, max_series is {monitor.signal.max_series}",
            SERIES_LIMIT,
        )

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
        """Feed records in order: the same outcome and state as `process` on each."""
        out = Outcome()
        for _, one in self.process_each(records):
            out.anomalies.extend(one.anomalies)
            out.errors.extend(one.errors)
        return out

    def process_each(self, records: Iterable[InputRecord]) -> list[tuple[int, Outcome]]:
        """Feed records in order; (index, outcome) of each record whose outcome is not
        empty, in order, equal to what `process` on each record returns.

        A run of metric points is grouped by series (routes remembered per label set)
        and each series gets its points in one batch, in the order of the records; other
        records go through `process` where they stand. State, outcomes and their order
        are those of `process` record by record. With `on_verdict` set (it would see the
        verdicts grouped by series), every record goes through `process`.
        """
        if not isinstance(records, Sequence):
            records = list(records)
        results: _Tagged = []
        n = len(records)
        kinds = list(map(type, records))
        if self.on_verdict is not None:
            for i, record in enumerate(records):
                self._tag(i, self.process(record), results)
        elif kinds.count(MetricPoint) == n:
            self._metric_batch(records, 0, results)
        else:
            i = 0
            while i < n:
                if kinds[i] is MetricPoint:
                    end = i + 1
                    while end < n and kinds[end] is MetricPoint:
                        end += 1
                    self._metric_batch(records[i:end], i, results)
                    i = end
                else:
                    self._tag(i, self.process(records[i]), results)
                    i += 1
        return self._untag(results)

    def _metric_batch(
        self,
        records: Sequence[InputRecord],
        offset: int,
        results: _Tagged,
    ) -> None:
        """Metric points (exactly, not subclasses) that came at `offset` in a batch."""
        points: Sequence[MetricPoint] = records  # type: ignore[assignment]
        n = len(points)
        if not n:
            return
        try:
            routes = list(
                zip(
                    map(_PRODUCT, points),
                    map(_NAME, points),
                    map(tuple, map(_ITEMS, map(_LABELS, points))),
                    strict=True,
                )
            )
            times = _seconds(list(map(_TS, points)))
            values = list(map(_VALUE, points))
        except Exception:  # not what the contract says a metric point is: one by one
            for i in range(n):
                self._tag(offset + i, self.process(points[i]), results)
            return
        # the indices of each label set, label sets in order of first appearance
        of_route: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[int]] = {}
        for i, route in enumerate(routes):
            indices = of_route.get(route)
            if indices is None:
                of_route[route] = [i]
            else:
                indices.append(i)
        by_route = list(of_route.values())
        groups: dict[str, _Group] = {}
        for indices in by_route:
            first = indices[0]
            targets: list[_Group] = []
            refused: list[tuple[int, EngineError]] = []
            try:
                self._groups(routes[first], points[first].labels, groups, offset, targets, refused)
            except Exception:
                # where `process` raises (a series that cannot be made): what it does up to
                # there is feed the points before this one, then this one to the series
                # of the monitors before the failing one
                self._metric_batch(points[:first], offset, results)
                t = times[first]
                if self.watermark is None or t > self.watermark:
                    self.watermark = t
                for group in targets:
                    scratch = Outcome()
                    self._feed(group.series, t, values[first], scratch)
                    self._tag(offset + first, scratch, results, group.position)
                for position, error in refused:
                    results.append((offset + first, position, error))
                raise
            for group in targets:
                group.parts.append(indices)
            for position, error in refused:
                results.extend((offset + i, position, error) for i in indices)
        prior = self.watermark
        running = list(
            itertools.accumulate(times, max, initial=times[0] if prior is None else prior)
        )
        newest = running[-1]
        self.watermark = newest
        for group in groups.values():
            parts = group.parts
            indices = parts[0] if len(parts) == 1 else sorted(itertools.chain(*parts))
            group.fed = running[indices[-1] + 1]
            group.index = indices
            group.ts = list(map(times.__getitem__, indices))
            group.xs = list(map(values.__getitem__, indices))
        self._feed_groups(groups, results)

    def _groups(
        self,
        route: tuple[str, str, tuple[tuple[str, str], ...]],
        labels: dict[str, str],
        groups: dict[str, _Group],
        offset: int,
        out: list[_Group],
        refused: list[tuple[int, EngineError]],
    ) -> None:
        """The batch's groups a metric point with these labels goes to, into `out`, series
        made as `process` makes them; (position, error) of the monitors that have no
        room for a new series into `refused`."""
        for position, monitor, series_labels, key in self._metric_routes(route, labels):
            group = groups.get(key)
            if group is None:
                series = self._metric_series(monitor, series_labels, key)
                if series is None:
                    refused.append((position, self._untracked(monitor, key)))
                    continue
                group = groups[key] = _Group(series, position, offset)
            out.append(group)

    def _metric_routes(
        self, route: tuple[str, str, tuple[tuple[str, str], ...]], labels: dict[str, str]
    ) -> _Routes:
        """The metric monitors selecting this label set, with their series keys (cached:
        matchers and keys depend on nothing else)."""
        routes = self._routes.get(route)
        if routes is None:
            routes = []
            for position, (monitor, matches) in enumerate(self._metric.get(route[:2], ())):
                if matches(labels):
                    series_labels = dict(labels)
                    key = series_key(monitor.id, series_labels)
                    routes.append((position, monitor, series_labels, key))
            if len(self._routes) >= ROUTE_CACHE_SIZE:
                self._routes.clear()
            self._routes[route] = routes
        return routes

    def _feed_groups(self, groups: dict[str, _Group], results: _Tagged) -> None:
        """Each group's points to its series: one `update_batches` call per detector class
        with a batch path of its own, `_feed` point by point otherwise."""
        native: dict[type[Any], list[_Group]] = {}
        for group in groups.values():
            if group.series.detector.native_batch:
                native.setdefault(type(group.series.detector), []).append(group)
            else:
                self._feed_one_by_one(group, results)
        for cls, batch_groups in native.items():
            try:
                batches = cls.update_batches(
                    [g.series.detector for g in batch_groups],
                    [g.ts for g in batch_groups],
                    [g.xs for g in batch_groups],
                )
            except Exception:  # states untouched: series by series finds the one that fails
                for group in batch_groups:
                    self._feed_batch(group, results)
                continue
            for group, batch in zip(batch_groups, batches, strict=True):
                self._judge_batch(group, batch, results)

    def _feed_batch(self, group: _Group, results: _Tagged) -> None:
        try:
            batch = group.series.detector.update_batch(group.ts, group.xs)
        except Exception:  # state untouched: point by point finds the point and says so
            self._feed_one_by_one(group, results)
        else:
            self._judge_batch(group, batch, results)

    def _feed_one_by_one(self, group: _Group, results: _Tagged) -> None:
        scratch = Outcome()
        for i, t, x in zip(group.index, group.ts, group.xs, strict=True):
            self._feed(group.series, t, x, scratch)
            if scratch.anomalies or scratch.errors:
                self._tag(group.offset + i, scratch, results, group.position)
                scratch = Outcome()
        group.series.last_fed = group.fed  # the watermark `process` had at its last point

    def _judge_batch(self, group: _Group, batch: VerdictBatch, results: _Tagged) -> None:
        """What `_feed` does after `update`, for each verdict of a batch (no `on_verdict`):
        only anomalous verdicts, and those after an anomaly or an absence, matter."""
        series, ts, xs, flags = group.series, group.ts, group.xs, batch.flags
        series.last_fed = group.fed
        seen = ts if None not in xs else [t for t, x in zip(ts, xs, strict=True) if x is not None]
        if seen:
            newest = max(seen)
            last = series.last_seen
            series.last_seen = newest if last is None else max(last, newest)
        position, offset = group.position, group.offset
        i, n = 0, len(flags)
        while i < n:
            if series.absent or series.anomalous_since is not None:
                if not flags[i]:
                    i += 1
                    continue
            else:
                try:
                    i = flags.index(VerdictBatch.ANOMALOUS, i)
                except ValueError:
                    return
            verdict = batch.get(i)
            assert verdict is not None
            t = ts[i]
            if series.absent:
                series.absent = False
                if not verdict.anomalous:
                    series.anomalous_since = None
                    anomaly = series.anomaly(t, "recovered", verdict)
                    results.append((offset + group.index[i], position, anomaly))
                    i += 1
                    continue
            found = series.judge(t, verdict)
            if found is not None:
                results.append((offset + group.index[i], position, found))
            i += 1

    @staticmethod
    def _tag(i: int, outcome: Outcome, results: _Tagged, sub: int = 0) -> None:
        """Entries of a record's outcome, tagged (record, rank) so that a stable sort
        restores `process`'s order of anomalies and of errors (within a metric point's
        outcome: by monitor, from `sub`, each monitor giving at most one entry)."""
        for k, anomaly in enumerate(outcome.anomalies):
            results.append((i, sub + k, anomaly))
        for k, error in enumerate(outcome.errors):
            results.append((i, sub + k, error))

    @staticmethod
    def _untag(results: _Tagged) -> list[tuple[int, Outcome]]:
        results.sort(key=lambda entry: (entry[0], entry[1]))
        out: list[tuple[int, Outcome]] = []
        for i, _, item in results:
            if not out or out[-1][0] != i:
                out.append((i, Outcome()))
            if isinstance(item, EngineError):
                out[-1][1].errors.append(item)
            else:
                out[-1][1].anomalies.append(item)
        return out

    def _feed(self, series: Series, t: float, x: Any, out: Outcome) -> None:
        series.last_fed = self.watermark
        try:
            verdict = series.detector.update(t, x)
        except Exception as exc:  # a detector bug must not stop the other monitors
            out.errors.append(
                EngineError(
                    f"monitor {series.monitor.id}: detector {series.detector.kind} "
                    f"failed: {type(exc).__name__}: {exc}",
                    DETECTOR_FAILURE,
                )
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
        labels = record.labels
        route = (record.product, record.name, tuple(labels.items()))
        for _, monitor, series_labels, key in self._metric_routes(route, labels):
            series = self._metric_series(monitor, series_labels, key)
            if series is None:
                out.errors.append(self._untracked(monitor, key))
                continue
            self._feed(series, t, record.value, out)

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
        """Absence and freshness checks at `now` (event time: usually the watermark); metric
        series without a point for their monitor's `forget_after` are dropped first."""
        t = now.timestamp() if isinstance(now, datetime) else now
        out = Outcome()
        self._forget(t if self.watermark is None else min(t, self.watermark), out)
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

    def _forget(self, t: float, out: Outcome) -> None:
        """Drop the metric series idle past `forget_after` at `t` (the wall clock never
        ahead of the newest event, so a replay of old data forgets nothing). A series
        with an open anomaly or absence gets a last `recovered`, so its alert resolves
        rather than fire for a series that is gone."""
        if not self._forget_after:
            return
        gone = [
            key
            for key, series in self.series.items()
            if (limit := self._forget_after.get(series.monitor.id)) is not None
            and series.last_fed is not None
            and t - series.last_fed > limit
        ]
        for key in gone:
            series = self.series.pop(key)
            self._series_count[series.monitor.id] -= 1
            if series.absent or series.anomalous_since is not None:
                days = self._forget_after[series.monitor.id] / DAY
                verdict = Verdict(
                    score=0.0,
                    anomalous=False,
                    kind="forgotten",
                    detail=f"no point for more than {days:g} d (forget_after): series forgotten",
                )
                if self.on_verdict is not None:
                    self.on_verdict(series, t, verdict)
                out.anomalies.append(series.anomaly(t, "recovered", verdict))

    def _check(self, series: Series, t: float, check: Any, out: Outcome) -> None:
        try:
            verdict = check(t)
        except Exception as exc:
            out.errors.append(
                EngineError(
                    f"monitor {series.monitor.id}: detector {series.detector.kind} "
                    f"check failed: {type(exc).__name__}: {exc}",
                    DETECTOR_FAILURE,
                )
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
        try:
            snap = msgspec.msgpack.decode(data, type=EngineSnapshot)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StateError(f"engine snapshot unreadable: {exc}") from None
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
            # from a snapshot older than `last_fed`: its last value (none: kept until fed)
            series.last_fed = item.last_seen if item.last_fed is None else item.last_fed
            series.anomalous_since = item.anomalous_since
            series.absent = item.absent
            self.series[series.key] = series
        for key, join in snap.joins.items():
            current = self._joins.get(key)
            if current is not None:
                restored = LabelJoin.restore(join)
                restored.window = current.window  # `join_within` may have been edited
                self._joins[key] = restored
        # all restored series are kept, also beyond a `max_series` lowered since
        self._series_count = defaultdict(int, Counter(s.monitor.id for s in self.series.values()))
        return notes
