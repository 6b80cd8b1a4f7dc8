"""The monitor model: what a product file in `detectors/` may say.

Every field has a default where one makes sense, so a monitor can be two lines long.
Detector parameters are validated against the detector's own `Params` struct when the
catalog is loaded (see `loader.py`), so a typo fails at start, not at the first record.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec

from lupus_stream.contracts.names import NAME_PATTERN_WHOLE
from lupus_stream.detection.registry import default_kind
from lupus_stream.durations import parse_duration
from lupus_stream.monitors.matchers import compile_regex

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NAME_PATTERN_WHOLE)]
Duration = Annotated[str, msgspec.Meta(max_length=32)]


class FieldError(ValueError):
    """A `__post_init__` check failed on one field; the loader adds `field` to the path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _duration(field: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise FieldError(field, str(exc)) from None


class _Signal(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="kind"
):
    input_kind: ClassVar[str] = "series"


class MetricSignal(_Signal, tag="metric", frozen=True, kw_only=True):
    """A scalar metric, with Prometheus-style label matchers; one series per label set."""

    name: Name
    labels: dict[Name, str] = {}  # matchers by label name (names as records carry them)
    absent_after: Duration | None = None
    # label sets tracked per engine; points of further ones are dead letters
    max_series: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10_000
    forget_after: Duration = "30d"  # a series without a point this long is dropped

    def __post_init__(self) -> None:
        forget = _duration("forget_after", self.forget_after)
        if forget <= 0:
            raise FieldError("forget_after", "forget_after must be positive")
        if self.absent_after is not None:
            absent = _duration("absent_after", self.absent_after)
            if absent <= 0:
                raise FieldError("absent_after", "absent_after must be positive")
            if forget <= absent:
                raise FieldError(
                    "forget_after",
                    f"forget_after ({self.forget_after}) must be longer than absent_after "
                    f"({self.absent_after}): a series would be forgotten before it is missed",
                )
        for name, value in self.labels.items():
            if value.startswith(("=~", "!~")):
                try:
                    compile_regex(value[2:])
                except ValueError as exc:
                    raise FieldError(
                        f"labels.{name}", f"invalid regex {value[2:]!r} (RE2 syntax): {exc}"
                    ) from None


class FeatureSignal(_Signal, tag="feature", frozen=True, kw_only=True):
    """One input feature of a model's prediction log (its distribution, missing rate, type)."""

    input_kind: ClassVar[str] = "distribution"

    model: Name
    feature: Name


class PredictionSignal(_Signal, tag="prediction", frozen=True, kw_only=True):
    """The output distribution of a model."""

    input_kind: ClassVar[str] = "distribution"

    model: Name


class AccuracySignal(_Signal, tag="accuracy", frozen=True, kw_only=True):
    """Accuracy of a model once labels arrive, joined to predictions by request id."""

    input_kind: ClassVar[str] = "outcome"

    model: Name
    join_within: Duration = "7d"

    def __post_init__(self) -> None:
        if _duration("join_within", self.join_within) <= 0:
            raise FieldError("join_within", "join_within must be positive")


class FairnessSignal(_Signal, tag="fairness", frozen=True, kw_only=True):
    """Gap in accuracy between the groups of one segment attribute."""

    input_kind: ClassVar[str] = "grouped_outcome"

    model: Name
    group: Name
    join_within: Duration = "7d"

    def __post_init__(self) -> None:
        if _duration("join_within", self.join_within) <= 0:
            raise FieldError("join_within", "join_within must be positive")


class SourceSignal(_Signal, tag="source", frozen=True, kw_only=True):
    """A daily upstream table that must land by `expected_by` (HH:MM in `timezone`)."""

    input_kind: ClassVar[str] = "freshness"

    source: Name
    expected_by: Annotated[str, msgspec.Meta(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "06:00"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: a key naming a directory of the tz database ("America") or an
            # unreadable file is not a timezone either
            raise FieldError("timezone", f"unknown timezone {self.timezone!r}") from None


Signal = (
    MetricSignal | FeatureSignal | PredictionSignal | AccuracySignal | FairnessSignal | SourceSignal
)

Severity = Literal["page", "ticket", "info"]


class AlertPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """When an anomaly becomes an alert and when the alert ends (Prometheus semantics)."""

    severity: Severity = "ticket"
    for_: Duration = msgspec.field(default="0s", name="for")
    keep_firing_for: Duration = "0s"
    labels: dict[Name, str] = {}
    annotations: dict[Name, str] = {}

    def __post_init__(self) -> None:
        _duration("for", self.for_)
        _duration("keep_firing_for", self.keep_firing_for)

    @property
    def for_seconds(self) -> float:
        return parse_duration(self.for_)

    @property
    def keep_firing_seconds(self) -> float:
        return parse_duration(self.keep_firing_for)


class Monitor(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One thing to watch: a signal, how to judge it, and how to alert on it."""

    name: Name
    signal: Signal
    detector: dict[str, Any] = {}
    alert: AlertPolicy = AlertPolicy()
    description: str = ""
    product: str = ""  # filled in from the enclosing product file

    def __post_init__(self) -> None:
        kind = self.detector.get("kind")
        if "kind" in self.detector and not isinstance(kind, str):
            # a non-string kind (`kind: 5`, `kind:` left empty) must not silently become
            # the default detector of the signal
            raise FieldError("detector.kind", f"detector kind must be a string, got {kind!r}")

    @property
    def id(self) -> str:
        return f"{self.product}/{self.name}"

    @property
    def detector_kind(self) -> str:
        kind = self.detector.get("kind")
        return kind if isinstance(kind, str) else default_kind(self.signal.input_kind)

    @property
    def detector_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.detector.items() if k != "kind"}


class ProductSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A product file: who owns it, where its alerts go, and its monitors."""

    product: Name
    owner: str
    receiver: str
    monitors: list[Monitor]
    description: str = ""


class Catalog(msgspec.Struct, frozen=True, kw_only=True):
    """All loaded products, with the file each came from."""

    products: dict[str, ProductSpec]
    files: dict[str, str] = {}

    @property
    def monitors(self) -> list[Monitor]:
        return [m for p in self.products.values() for m in p.monitors]

    def monitor(self, monitor_id: str) -> Monitor:
        product, _, name = monitor_id.partition("/")
        for m in self.products[product].monitors:
            if m.name == name:
                return m
        raise KeyError(monitor_id)
