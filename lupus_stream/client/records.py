"""Plain arguments to the records the workers accept: the same contract, checked where
the caller can still be told which argument broke which rule."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import msgspec

from lupus_stream.contracts.decode import MAX_MESSAGE_BYTES
from lupus_stream.contracts.names import NAME_RULE, bad_name
from lupus_stream.contracts.records import (
    EARLIEST,
    LATEST,
    TIME_RULE,
    InputRecord,
    Label,
    MetricPoint,
    PredictionLog,
    SourceLanded,
)
from lupus_stream.contracts.topics import (
    LABELS_TOPIC,
    METRICS_TOPIC,
    PREDICTIONS_TOPIC,
    SOURCES_TOPIC,
)

R = TypeVar("R", bound=msgspec.Struct)

# Bytes of one message value. The decoder and the topics (max.message.bytes) accept up to
# MAX_MESSAGE_BYTES per record *batch*, which also holds the key and ~100 bytes of framing.
MAX_BATCH_BYTES: Final = MAX_MESSAGE_BYTES - 16 * 1024

TOPIC_OF: Final[dict[type[msgspec.Struct], str]] = {
    MetricPoint: METRICS_TOPIC,
    PredictionLog: PREDICTIONS_TOPIC,
    Label: LABELS_TOPIC,
    SourceLanded: SOURCES_TOPIC,
}
_KIND_OF: Final[dict[type[msgspec.Struct], str]] = {
    MetricPoint: "metric",
    PredictionLog: "prediction",
    Label: "label",
    SourceLanded: "source",
}
_ERROR_AT = re.compile(r"^(?P<rule>.*?) - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$", re.S)


def _plain(value: Any) -> Any:
    """NumPy scalars (pandas cells) as the Python values msgspec accepts."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        return value.item()
    return value


def _finite(field_name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(
            f"field {field_name}: {value!r} is not a finite number "
            "(JSON has no NaN or infinity; it would be sent as null)"
        )


def _timestamp(field_name: str, value: datetime | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"field {field_name}: naive datetime {value.isoformat()}: the contract requires "
                "a timezone, e.g. datetime.now(UTC) or value.replace(tzinfo=UTC)"
            )
        if type(value) is not datetime:  # pandas.Timestamp and other subclasses
            value = datetime(
                value.year, value.month, value.day, value.hour, value.minute,
                value.second, value.microsecond, value.tzinfo, fold=value.fold,
            )  # fmt: skip
        if not EARLIEST <= value < LATEST:
            raise ValueError(f"field {field_name}: {TIME_RULE}, got {value.isoformat()}")
    return value


def _mapping(field_name: str, value: Mapping[str, Any] | None) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"field {field_name}: expected a mapping, got {type(value).__name__}")
    out = {_plain(k): _plain(v) for k, v in value.items()}
    for k, v in out.items():
        _finite(f"{field_name}[{k!r}]", v)
    return out


def _convert(cls: type[R], fields: dict[str, Any]) -> R:
    try:
        record = msgspec.convert(fields, type=cls)
    except msgspec.ValidationError as exc:
        kind = _KIND_OF[cls]
        match = _ERROR_AT.match(str(exc))
        if match is None:
            raise ValueError(f"invalid {kind} record: {exc}") from None
        path = match.group("path") or "?"
        if match.group("key"):
            path += "[key]"
        got = f" (got {fields[path]!r:.80})" if path in fields else ""
        raise ValueError(
            f"invalid {kind} record: field {path}: {match.group('rule')}{got}"
        ) from None
    path = bad_name(record)
    if path is not None:
        got = f" (got {fields[path]!r:.80})" if path in fields else ""
        raise ValueError(f"invalid {_KIND_OF[cls]} record: field {path}: {NAME_RULE}{got}")
    return record


def build_metric(
    product: str,
    name: str,
    value: float | None,
    ts: datetime | None,
    labels: Mapping[str, str] | None,
) -> MetricPoint:
    value = _plain(value)
    _finite("value", value)
    return _convert(
        MetricPoint,
        {
            "product": product,
            "name": name,
            "ts": _timestamp("ts", ts),
            "value": value,
            "labels": _mapping("labels", labels),
        },
    )


def build_prediction(
    product: str,
    model: str,
    model_version: str,
    request_id: str,
    features: Mapping[str, float | str | bool | None] | None,
    prediction: float | str | bool | Sequence[str],
    ts: datetime | None,
    segment: Mapping[str, str] | None,
) -> PredictionLog:
    prediction = _plain(prediction)
    if isinstance(prediction, tuple | list):
        prediction = [_plain(p) for p in prediction]
    _finite("prediction", prediction)
    return _convert(
        PredictionLog,
        {
            "product": product,
            "model": model,
            "model_version": model_version,
            "request_id": request_id,
            "ts": _timestamp("ts", ts),
            "features": _mapping("features", features),
            "prediction": prediction,
            "segment": _mapping("segment", segment),
        },
    )


def build_label(
    product: str, model: str, request_id: str, label: float | str | bool, ts: datetime | None
) -> Label:
    label = _plain(label)
    _finite("label", label)
    return _convert(
        Label,
        {
            "product": product,
            "model": model,
            "request_id": request_id,
            "ts": _timestamp("ts", ts),
            "label": label,
        },
    )


def build_source(
    product: str, source: str, partition: str, row_count: int, landed_at: datetime | None
) -> SourceLanded:
    return _convert(
        SourceLanded,
        {
            "product": product,
            "source": source,
            "partition": partition,
            "row_count": _plain(row_count),
            "landed_at": _timestamp("landed_at", landed_at),
        },
    )


def encoded_size(record: InputRecord, max_bytes: int = MAX_BATCH_BYTES) -> int:
    """Encoded size of one record; a record that cannot fit in any message is rejected."""
    size = len(msgspec.json.encode(record))
    if size + 2 > max_bytes:
        raise ValueError(
            f"invalid {_KIND_OF[type(record)]} record: {size} bytes encoded, "
            f"more than a message may hold ({max_bytes - 2})"
        )
    return size


class RecordReporter:
    """The reporting methods of a client: each checks its arguments, builds one record
    and hands it to `_report`, which buffers it for sending."""

    def _report(self, record: InputRecord) -> None:
        raise NotImplementedError

    def report_metric(
        self,
        product: str,
        name: str,
        value: float | None,
        ts: datetime | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """One point of the series `product/name`; `value=None` marks a known gap."""
        self._report(build_metric(product, name, value, ts, labels))

    def log_prediction(
        self,
        product: str,
        model: str,
        model_version: str,
        request_id: str,
        features: Mapping[str, float | str | bool | None] | None,
        prediction: float | str | bool | Sequence[str],
        ts: datetime | None = None,
        segment: Mapping[str, str] | None = None,
    ) -> None:
        """One served prediction with the features it was made from."""
        self._report(
            build_prediction(
                product, model, model_version, request_id, features, prediction, ts, segment
            )
        )

    def log_label(
        self,
        product: str,
        model: str,
        request_id: str,
        label: float | str | bool,
        ts: datetime | None = None,
    ) -> None:
        """Ground truth for the prediction `request_id` of `model`."""
        self._report(build_label(product, model, request_id, label, ts))

    def report_source_landed(
        self,
        product: str,
        source: str,
        partition: str,
        row_count: int,
        landed_at: datetime | None = None,
    ) -> None:
        """A partition of an upstream data source has landed."""
        self._report(build_source(product, source, partition, row_count, landed_at))
