"""One monitored series: a detector instance plus what the engine needs to know about it."""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from lupus_stream.contracts import Anomaly
from lupus_stream.detection.base import Detector, Verdict
from lupus_stream.monitors import Monitor


def series_key(monitor_id: str, labels: dict[str, str]) -> str:
    """`monitor{k=v,...}`, keys sorted. A value holding `,={}"\\` is written as a JSON
    string, so that no two label sets share a key (`{a: "x,b=y"}` and `{a: x, b: y}`);
    plain values are written as they are."""
    if not labels:
        return monitor_id
    return monitor_id + "{" + ",".join(f"{k}={_value(labels[k])}" for k in sorted(labels)) + "}"


def _value(v: str) -> str:
    return json.dumps(v, ensure_ascii=False) if _QUOTED.search(v) else v


_QUOTED = re.compile(r'[,={}"\\]')


def anomaly_id(key: str, t: float, state: str, kind: str) -> str:
    """Deterministic, so a replay after a restart produces the same ids."""
    digest = hashlib.sha256(f"{key}|{t:.6f}|{state}|{kind}".encode()).hexdigest()
    return digest[:20]


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def to_datetime(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=UTC)


class SeriesSnapshot(msgspec.Struct, array_like=True):
    monitor: str
    labels: dict[str, str]
    detector: bytes
    last_seen: float | None
    anomalous_since: float | None
    absent: bool
    last_fed: float | None = None  # absent from snapshots written before it existed


class Series:
    """Per-series state: the live detector, last event time, and whether it is anomalous."""

    __slots__ = (
        "absent",
        "anomalous_since",
        "detector",
        "key",
        "labels",
        "last_fed",
        "last_seen",
        "monitor",
    )

    def __init__(
        self,
        monitor: Monitor,
        labels: dict[str, str],
        detector: Detector[Any, Any],
        key: str | None = None,
    ):
        self.monitor = monitor
        self.labels = labels
        self.key = series_key(monitor.id, labels) if key is None else key
        self.detector = detector
        self.last_seen: float | None = None  # event time of the latest value (not missing)
        # the engine's watermark when the series last got a point (missing values too):
        # how long it has been idle, in the engine's own progress
        self.last_fed: float | None = None
        self.anomalous_since: float | None = None
        self.absent = False

    def judge(self, t: float, verdict: Verdict | None) -> Anomaly | None:
        """Turn a verdict into an anomaly record, or a `recovered` one that closes a run."""
        if verdict is None:
            return None
        if verdict.anomalous:
            if self.anomalous_since is None:
                self.anomalous_since = t
            return self.anomaly(t, "anomalous", verdict)
        if self.anomalous_since is not None and not self.absent:
            self.anomalous_since = None
            return self.anomaly(t, "recovered", verdict)
        return None

    def anomaly(self, t: float, state: str, verdict: Verdict) -> Anomaly:
        """The anomaly record of a verdict. Numbers JSON cannot carry (infinities, NaN,
        from a detector's arithmetic gone wrong) are left out, and a score that is not a
        number becomes the verdict's flag, so that no reader of the record fails on it."""
        changepoint = verdict.changepoint_at
        score, detail = verdict.score, verdict.detail
        if not math.isfinite(score):
            score = 1.0 if verdict.anomalous else 0.0
            detail = f"{detail} (the detector's score was {verdict.score})".lstrip()
        return Anomaly(
            id=anomaly_id(self.key, t, state, verdict.kind),
            product=self.monitor.product,
            monitor=self.monitor.id,
            series=self.labels,
            ts=to_datetime(t),
            state=state,  # type: ignore[arg-type]
            kind=verdict.kind,
            detector=self.detector.kind,
            score=score,
            value=_finite(verdict.value),
            expected=_finite(verdict.expected),
            lower=_finite(verdict.lower),
            upper=_finite(verdict.upper),
            changepoint_at=None if changepoint is None else to_datetime(changepoint),
            detail=detail,
        )

    def snapshot(self) -> SeriesSnapshot:
        return SeriesSnapshot(
            self.monitor.id,
            self.labels,
            self.detector.to_bytes(),
            self.last_seen,
            self.anomalous_since,
            self.absent,
            self.last_fed,
        )
