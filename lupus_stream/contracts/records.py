"""Record types. `topics/*.yaml` holds the same contracts as data; a test keeps them equal.

Input records carry a `type` tag so that one stream (a JSONL file, stdin, an HTTP body)
can mix them; on Kafka each input topic accepts exactly one type.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

import msgspec

from lupus_stream.contracts.names import NAME_PATTERN

Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
# The pattern is in the JSON Schema only: decoders check it once per distinct name
# (`names.py`), not with a regular expression on every string.
Name = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, extra_json_schema={"pattern": NAME_PATTERN})
]
Text = Annotated[str, msgspec.Meta(max_length=1024)]
Labels = dict[Name, Text]
# Input numbers stay far from the float limits, so that the detectors' sums of squares
# cannot overflow to infinity and scores cannot become NaN.
MAX_MAGNITUDE = 1e100
Number = Annotated[float, msgspec.Meta(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
# Event times outside these bounds are mistakes (and past year 9999 once in UTC, where
# datetimes end); the decoder checks them, as msgspec has no bounds for datetimes.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
TIME_RULE = "Expected a time from 1900-01-01 to before 2200-01-01 UTC"
FeatureValue = Number | str | bool | None
Prediction = Number | str | bool | list[Text]


class InputBase(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Common shape of the records producers publish."""

    time_field: ClassVar[str] = "ts"  # the field `event_time` reads

    product: Name


class MetricPoint(InputBase, tag="metric", frozen=True, kw_only=True):
    """One observation of a scalar series; `value` null means the producer knows it is missing."""

    name: Name
    ts: Timestamp
    value: Number | None
    labels: Labels = {}

    @property
    def event_time(self) -> datetime:
        return self.ts


class PredictionLog(InputBase, tag="prediction", frozen=True, kw_only=True):
    """One served prediction with the features it was made from."""

    model: Name
    model_version: Text
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    ts: Timestamp
    features: dict[Name, FeatureValue] = {}
    prediction: Prediction
    segment: Labels = {}

    @property
    def event_time(self) -> datetime:
        return self.ts


class Label(InputBase, tag="label", frozen=True, kw_only=True):
    """Ground truth for an earlier prediction, joined to it by `request_id`."""

    model: Name
    request_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    ts: Timestamp
    label: Number | str | bool

    @property
    def event_time(self) -> datetime:
        return self.ts


class SourceLanded(InputBase, tag="source", frozen=True, kw_only=True):
    """A partition of an upstream data source has landed."""

    time_field: ClassVar[str] = "landed_at"

    source: Name
    partition: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    row_count: Annotated[int, msgspec.Meta(ge=0)]
    landed_at: Timestamp

    @property
    def event_time(self) -> datetime:
        return self.landed_at


InputRecord = MetricPoint | PredictionLog | Label | SourceLanded
INPUT_TYPES: dict[str, type[InputBase]] = {
    "metric": MetricPoint,
    "prediction": PredictionLog,
    "label": Label,
    "source": SourceLanded,
}

AnomalyState = Literal["anomalous", "recovered"]


class Anomaly(msgspec.Struct, frozen=True, kw_only=True):
    """A detector's verdict on one observation or window of one series.

    `recovered` closes a run of anomalous verdicts for the series, so that the alert
    stage can resolve without seeing every normal observation.
    """

    id: str
    product: str
    monitor: str
    series: dict[str, str]
    ts: Timestamp
    state: AnomalyState
    kind: str
    detector: str
    score: float
    value: float | None = None
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    changepoint_at: Timestamp | None = None
    detail: str = ""


AlertStatus = Literal["firing", "resolved"]


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A transition of one alert, identified by its fingerprint."""

    fingerprint: str
    status: AlertStatus
    at: Timestamp
    product: str
    monitor: str
    receiver: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: Timestamp
    ends_at: Timestamp | None = None
    anomaly_id: str = ""
    value: float | None = None
    score: float = 0.0
    silenced_by: list[str] = []  # ids of the silences muting it: notifiers leave it alone


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message or record that could not be processed, kept with the reason."""

    source: str
    reason: str
    received_at: Timestamp
    raw: bytes
    record_index: int | None = None
    field: str | None = None
    rule: str = ""
