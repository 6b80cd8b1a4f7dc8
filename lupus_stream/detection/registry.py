"""Detector kinds by name, with the kind of input each one reads.

Input kinds:
- `series`: `update(t, x: float | None)`, a verdict per observed point;
- `distribution`: `update(t, x: float | str | bool | None)`, a verdict per closed window;
- `outcome`: `update(t, correct: float)` (1 right, 0 wrong), a verdict per closed window;
- `grouped_outcome`: `update(t, (group, correct))`, a verdict per closed window;
- `freshness`: `update(t, (partition, row_count))` on landing and `check(now)`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, NoReturn

import msgspec

from lupus_stream.detection.base import Detector, ParamError, StateError, read_envelope

InputKind = str

# kind -> (module, class name, input kind)
_KINDS: dict[str, tuple[str, str, InputKind]] = {
    "threshold": ("lupus_stream.detection.threshold", "ThresholdDetector", "series"),
    "robust": ("lupus_stream.detection.robust", "RobustBaselineDetector", "series"),
    "baseline": ("lupus_stream.detection.baseline", "SeasonalBaselineDetector", "series"),
    "seasonal": ("lupus_stream.detection.seasonal", "SeasonalDetector", "series"),
    "changepoint": ("lupus_stream.detection.changepoint", "ChangePointDetector", "series"),
    "drift": ("lupus_stream.detection.drift", "DriftDetector", "distribution"),
    "accuracy": ("lupus_stream.detection.accuracy", "AccuracyDetector", "outcome"),
    "fairness": ("lupus_stream.detection.fairness", "FairnessGapDetector", "grouped_outcome"),
    "freshness": ("lupus_stream.detection.freshness", "FreshnessDetector", "freshness"),
}

DEFAULT_KIND: dict[InputKind, str] = {
    "series": "seasonal",
    "distribution": "drift",
    "outcome": "accuracy",
    "grouped_outcome": "fairness",
    "freshness": "freshness",
}


@dataclass
class DetectorConfigError(ValueError):
    rule: str
    field: str | None = None

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}" if self.field else self.rule


def kinds() -> list[str]:
    return sorted(_KINDS)


def input_kind(kind: str) -> InputKind:
    return _KINDS[kind][2]


def detector_class(kind: str) -> type[Detector[Any, Any]]:
    try:
        module, name, _ = _KINDS[kind]
    except KeyError:
        raise DetectorConfigError(
            f"unknown detector kind {kind!r}; known: {kinds()}", "kind"
        ) from None
    cls: type[Detector[Any, Any]] = getattr(import_module(module), name)
    return cls


def default_kind(input_kind: InputKind) -> str:
    return DEFAULT_KIND[input_kind]


def parse_params(kind: str, params: Mapping[str, Any]) -> msgspec.Struct:
    cls = detector_class(kind)
    try:
        parsed: msgspec.Struct = msgspec.convert(dict(params), type=cls.Params, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = re.match(r"^(?P<rule>.*?)(?: - at `\$\.?(?P<path>[^`]*)`)?$", text, re.S)
        rule = match.group("rule") if match else text
        path = match.group("path") if match else None
        unknown = re.search(r"unknown field `([^`]+)`", rule)
        if unknown:
            path = unknown.group(1)
        if isinstance(exc.__cause__, ParamError):  # a check of one field in `__post_init__`
            path = exc.__cause__.field
        return _raise(rule, path or None)
    for name in parsed.__struct_fields__:  # YAML's .nan passes every bound check
        value = getattr(parsed, name)
        if isinstance(value, float) and math.isnan(value):
            _raise("Expected a number, got NaN", name)
    return parsed


def _raise(rule: str, field: str | None) -> NoReturn:
    raise DetectorConfigError(rule, field)


def validate(kind: str, params: Mapping[str, Any], expected_input: InputKind) -> None:
    """Check that `kind` exists, reads `expected_input`, and that `params` are valid."""
    cls = detector_class(kind)
    if input_kind(kind) != expected_input:
        fitting = sorted(k for k, v in _KINDS.items() if v[2] == expected_input)
        raise DetectorConfigError(
            f"detector {kind!r} reads {input_kind(kind)} input, this signal gives "
            f"{expected_input}; use one of {fitting}",
            "kind",
        )
    parse_params(kind, params)
    del cls


def make(kind: str, params: Mapping[str, Any] | None = None) -> Detector[Any, Any]:
    cls = detector_class(kind)
    return cls(parse_params(kind, params or {}))


def restore(data: bytes) -> Detector[Any, Any]:
    """Rebuild any registered detector from `to_bytes()` output."""
    env = read_envelope(data)
    if env.kind not in _KINDS:
        raise StateError(f"snapshot of unknown detector kind {env.kind!r}")
    return detector_class(env.kind).from_bytes(data)
