"""Kafka topics as data: `topics/<name>.yaml` holds each topic's key, partitions, configs,
the JSON Schema of one record and examples; `tests/contracts/test_topics.py` keeps the
schemas and examples equal to the record types of `records.py` and to the decoder.

The runtime reads the files with `load_topics` to create the topics and to learn their
partition counts and configs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

from lupus_stream.contracts.records import AlertEvent, Anomaly, DeadLetter
from lupus_stream.strict_yaml import StrictLoader

METRICS_TOPIC = "lupus.metrics"
PREDICTIONS_TOPIC = "lupus.predictions"
LABELS_TOPIC = "lupus.labels"
SOURCES_TOPIC = "lupus.sources"
ANOMALIES_TOPIC = "lupus.anomalies"
ALERTS_TOPIC = "lupus.alerts"
DEADLETTER_TOPIC = "lupus.deadletter"

# Input topic -> the `type` tag of the records it carries (a key of `records.INPUT_TYPES`).
INPUT_TOPICS: dict[str, str] = {
    METRICS_TOPIC: "metric",
    PREDICTIONS_TOPIC: "prediction",
    LABELS_TOPIC: "label",
    SOURCES_TOPIC: "source",
}
# Output topic -> the record type written to it.
OUTPUT_TOPICS: dict[str, type[msgspec.Struct]] = {
    ANOMALIES_TOPIC: Anomaly,
    ALERTS_TOPIC: AlertEvent,
    DEADLETTER_TOPIC: DeadLetter,
}
ALL_TOPICS: tuple[str, ...] = (*INPUT_TOPICS, *OUTPUT_TOPICS)

RecordType = Literal["metric", "prediction", "label", "source"]
TopicName = Annotated[str, msgspec.Meta(min_length=1, max_length=249, pattern=r"^[A-Za-z0-9._-]+$")]
ConfigValue = str | int | float | bool


class InvalidExample(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A value the topic must reject, and why."""

    value: Any
    reason: Annotated[str, msgspec.Meta(min_length=1)]


class Examples(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Example record values (JSON values written as YAML)."""

    valid: list[Any] = []
    invalid: list[InvalidExample] = []


class TopicSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One topic file."""

    name: TopicName
    description: str
    key: str
    partitions: Annotated[int, msgspec.Meta(ge=1)]
    config: dict[Annotated[str, msgspec.Meta(min_length=1)], ConfigValue]
    schema: dict[str, Any]
    record_type: RecordType | None = None
    examples: Examples = msgspec.field(default_factory=Examples)

    @property
    def is_input(self) -> bool:
        return self.record_type is not None

    def kafka_config(self) -> dict[str, str]:
        """The topic configs as the strings Kafka's admin API expects."""
        return {
            name: ("true" if value else "false") if isinstance(value, bool) else str(value)
            for name, value in self.config.items()
        }


class TopicError(ValueError):
    """A topic file is invalid; the message names the file and the field."""

    def __init__(self, file: str, message: str, field: str | None = None):
        self.file, self.field = file, field
        where = file + (f": field {field}" if field else "")
        super().__init__(f"{where}: {message}")


class _Loader(StrictLoader):
    """Safe loader that keeps timestamps as the strings written: examples are JSON values."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in StrictLoader.yaml_implicit_resolvers.items()
}

_PATH = re.compile(r"^(?P<rule>.*?) - at `\$(?P<path>[^`]*)`$", re.S)


def _locate(error: msgspec.ValidationError) -> tuple[str, str | None]:
    """Split a msgspec error into (rule, field path)."""
    text = str(error)
    match = _PATH.match(text)
    rule, path = (match.group("rule"), match.group("path")) if match else (text, "")
    named = re.search(r"(?:missing required|contains unknown) field `([^`]+)`", rule)
    if named:
        path = f"{path}.{named.group(1)}"
    return rule, path.lstrip(".") or None


def load_topic(path: Path | str) -> TopicSpec:
    """Parse and validate one topic file; its name must be the file name without `.yaml`."""
    path = Path(path)
    file = str(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except (OSError, UnicodeDecodeError) as exc:
        raise TopicError(file, f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TopicError(file, f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise TopicError(file, "expected a mapping with name, key, partitions, config, schema")
    try:
        spec = msgspec.convert(raw, type=TopicSpec)
    except msgspec.ValidationError as exc:
        rule, field = _locate(exc)
        raise TopicError(file, rule, field) from exc
    if spec.name != path.stem:
        raise TopicError(file, f"topic {spec.name!r} must be in {spec.name}.yaml", "name")
    if spec.name not in ALL_TOPICS:
        raise TopicError(file, f"unknown topic, expected one of {', '.join(ALL_TOPICS)}", "name")
    expected = INPUT_TOPICS.get(spec.name)
    if spec.record_type != expected:
        rule = f"must be {expected!r}" if expected else "only input topics have a record_type"
        raise TopicError(file, rule, "record_type")
    if spec.schema.get("type") != "object" or not isinstance(spec.schema.get("properties"), dict):
        raise TopicError(file, "expected a JSON Schema of an object with properties", "schema")
    return spec


def load_topics(directory: Path | str) -> dict[str, TopicSpec]:
    """Load `<directory>/*.yaml`; every topic of `ALL_TOPICS` must have exactly one file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TopicError(str(directory), "topic directory does not exist")
    topics: dict[str, TopicSpec] = {}
    for path in sorted(directory.glob("*.yaml")):
        spec = load_topic(path)
        topics[spec.name] = spec
    missing = [name for name in ALL_TOPICS if name not in topics]
    if missing:
        files = ", ".join(f"{name}.yaml" for name in missing)
        raise TopicError(str(directory), f"missing topic files: {files}")
    return {name: topics[name] for name in ALL_TOPICS}
