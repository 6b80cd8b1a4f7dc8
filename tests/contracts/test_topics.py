"""`topics/*.yaml` and the code agree.

For every topic file: its JSON Schema matches the record type of `records.py` (field names,
required fields, types and bounds), its valid examples pass both the real decoder and the
schema, and its invalid examples fail both.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import Draft202012Validator, FormatChecker

from lupus_stream.contracts.decode import MAX_MESSAGE_BYTES, decode_message
from lupus_stream.contracts.records import INPUT_TYPES, AlertEvent, Anomaly, DeadLetter
from lupus_stream.contracts.topics import (
    ALL_TOPICS,
    INPUT_TOPICS,
    LABELS_TOPIC,
    OUTPUT_TOPICS,
    PREDICTIONS_TOPIC,
    TopicError,
    TopicSpec,
    load_topics,
)

TOPICS_DIR = Path(__file__).resolve().parents[2] / "topics"
TOPICS = load_topics(TOPICS_DIR)
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"

# RFC 3339 date-time; unlike Python's fromisoformat it requires the seconds and a zone.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # `format` only applies to strings
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # ranges: raises ValueError
    return True


def _validator(topic: TopicSpec) -> Draft202012Validator:
    return Draft202012Validator(topic.schema, format_checker=FORMATS)


def _schema_errors(topic: TopicSpec, value: Any) -> list[str]:
    return [error.message for error in _validator(topic).iter_errors(value)]


def _struct(topic: TopicSpec) -> type[msgspec.Struct]:
    if topic.record_type is not None:
        return INPUT_TYPES[topic.record_type]
    return OUTPUT_TOPICS[topic.name]


def _examples(kind: str, inputs_only: bool) -> list[Any]:
    params = []
    for topic in TOPICS.values():
        if inputs_only and topic.record_type is None:
            continue
        values = topic.examples.valid if kind == "valid" else topic.examples.invalid
        params += [pytest.param(topic, v, id=f"{topic.name}-{i}") for i, v in enumerate(values)]
    return params


# --- the topic set ---------------------------------------------------------------------------


def test_every_topic_has_a_file_and_nothing_else() -> None:
    assert list(TOPICS) == list(ALL_TOPICS)
    assert {path.stem for path in TOPICS_DIR.glob("*.y*ml")} == set(ALL_TOPICS)


def test_input_topics_carry_the_record_types_of_the_decoder() -> None:
    assert sorted(INPUT_TOPICS.values()) == sorted(INPUT_TYPES)
    for name, record_type in INPUT_TOPICS.items():
        topic = TOPICS[name]
        assert topic.record_type == record_type
        assert topic.kafka_config()["max.message.bytes"] == str(MAX_MESSAGE_BYTES)
        assert len(topic.examples.valid) >= 3, name
        assert len(topic.examples.invalid) >= 5, name


def test_labels_are_co_partitioned_with_predictions() -> None:
    assert TOPICS[LABELS_TOPIC].partitions == TOPICS[PREDICTIONS_TOPIC].partitions


@pytest.mark.parametrize("topic", TOPICS.values(), ids=list(TOPICS))
def test_topic_file_is_complete(topic: TopicSpec) -> None:
    assert topic.description.strip() and topic.key.strip()
    assert {"cleanup.policy", "retention.ms", "max.message.bytes"} <= set(topic.config)
    assert all(isinstance(v, str) for v in topic.kafka_config().values())
    Draft202012Validator.check_schema(topic.schema)
    assert topic.schema["$schema"] == DRAFT_2020_12
    # inputs reject unknown fields like the decoder; outputs may gain optional fields
    assert topic.schema.get("additionalProperties", True) is (topic.record_type is None)


# --- schema <-> record type ----------------------------------------------------------------


@pytest.mark.parametrize("topic", TOPICS.values(), ids=list(TOPICS))
def test_schema_fields_are_the_struct_fields(topic: TopicSpec) -> None:
    fields = msgspec.structs.fields(_struct(topic))
    names = {f.encode_name for f in fields}
    required = {
        f.encode_name
        for f in fields
        if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
    }
    if topic.record_type is not None:
        names.add("type")  # the tag field of input records; not required on a topic
    assert set(topic.schema["properties"]) == names
    assert set(topic.schema["required"]) == required
    assert len(topic.schema["required"]) == len(required)


_CHECKED = (
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "format",
    "contentEncoding",
)


def _facts(node: dict[str, Any], defs: dict[str, Any], path: str = "") -> set[tuple[str, ...]]:
    """What a schema node accepts, as comparable (path, keyword, value) facts."""
    while "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    facts: set[tuple[str, ...]] = set()
    if "const" in node or "enum" in node:
        values = [node["const"]] if "const" in node else node["enum"]
        facts.add((path, "enum", json.dumps(sorted(values))))
    elif "type" in node and not path.endswith("{key}"):  # property names are always strings
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        facts |= {(path, "type", t) for t in types}
    facts |= {(path, key, json.dumps(node[key])) for key in _CHECKED if key in node}
    for branch in node.get("anyOf", []):
        facts |= _facts(branch, defs, path)
    if isinstance(node.get("items"), dict):
        facts |= _facts(node["items"], defs, f"{path}[]")
    if isinstance(node.get("propertyNames"), dict):
        facts |= _facts(node["propertyNames"], defs, f"{path}{{key}}")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        facts |= _facts(extra, defs, f"{path}{{}}")
    elif isinstance(extra, bool):
        facts.add((path, "additionalProperties", json.dumps(extra)))
    for name, sub in node.get("properties", {}).items():
        facts |= _facts(sub, defs, f"{path}.{name}")
    return facts


@pytest.mark.parametrize("topic", TOPICS.values(), ids=list(TOPICS))
def test_schema_types_and_bounds_are_the_struct_constraints(topic: TopicSpec) -> None:
    """The hand-written schema accepts what msgspec accepts: same types, bounds, patterns."""
    generated = msgspec.json.schema(_struct(topic))
    ours = _facts(topic.schema, topic.schema.get("$defs", {}))
    theirs = _facts(generated, generated["$defs"])
    assert sorted(ours - theirs) == [], "in the topic file but not in records.py"
    assert sorted(theirs - ours) == [], "in records.py but not in the topic file"


# --- examples of input topics --------------------------------------------------------------


@pytest.mark.parametrize(("topic", "value"), _examples("valid", inputs_only=True))
def test_valid_example_passes_decoder_and_schema(topic: TopicSpec, value: Any) -> None:
    assert topic.record_type is not None
    out = decode_message(json.dumps(value).encode(), accept=(topic.record_type,))
    assert [e.describe() for e in out.errors] == []
    assert len(out.records) == 1
    assert type(out.records[0]) is INPUT_TYPES[topic.record_type]
    assert _schema_errors(topic, value) == []
    # what the workers re-encode (e.g. into a batch) still follows the contract
    encoded = msgspec.json.encode(out.records[0])
    assert _schema_errors(topic, json.loads(encoded)) == []
    assert decode_message(encoded, accept=(topic.record_type,)).records == out.records


@pytest.mark.parametrize("topic", [TOPICS[name] for name in INPUT_TOPICS], ids=list(INPUT_TOPICS))
def test_valid_examples_pass_as_one_batch(topic: TopicSpec) -> None:
    assert topic.record_type is not None
    batch = json.dumps(topic.examples.valid).encode()
    out = decode_message(batch, accept=(topic.record_type,))
    assert [e.describe() for e in out.errors] == []
    assert len(out.records) == len(topic.examples.valid)


@pytest.mark.parametrize(("topic", "example"), _examples("invalid", inputs_only=True))
def test_invalid_example_fails_decoder_and_schema(topic: TopicSpec, example: Any) -> None:
    assert topic.record_type is not None
    out = decode_message(json.dumps(example.value).encode(), accept=(topic.record_type,))
    assert out.records == [], f"decoder accepted: {example.reason}"
    assert len(out.errors) == 1
    assert _schema_errors(topic, example.value) != [], f"schema accepted: {example.reason}"


@pytest.mark.parametrize(("topic", "example"), _examples("invalid", inputs_only=True))
def test_invalid_example_in_a_batch_spares_the_valid_ones(topic: TopicSpec, example: Any) -> None:
    assert topic.record_type is not None
    batch = [*topic.examples.valid, example.value]
    out = decode_message(json.dumps(batch).encode(), accept=(topic.record_type,))
    assert len(out.records) == len(topic.examples.valid)
    assert [e.index for e in out.errors] == [len(topic.examples.valid)]
    assert out.errors[0].describe().startswith(f"record {len(topic.examples.valid)}")


# --- output topics ----------------------------------------------------------------------------


OUTPUT_EXAMPLES = [p for p in _examples("valid", False) if p.values[0].record_type is None]


@pytest.mark.parametrize(("topic", "value"), OUTPUT_EXAMPLES)
def test_output_example_passes_struct_and_schema(topic: TopicSpec, value: Any) -> None:
    msgspec.json.decode(json.dumps(value).encode(), type=_struct(topic))
    assert _schema_errors(topic, value) == []


T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CEST = timezone(timedelta(hours=2))
OUTPUT_INSTANCES = [
    pytest.param(
        Anomaly(
            id="a1",
            product="ad-model",
            monitor="hourly_impressions",
            series={"region": "eu"},
            ts=T0,
            state="anomalous",
            kind="level_shift",
            detector="seasonal_band",
            score=6.25,
            value=91022.0,
            expected=184000.0,
            lower=150000.0,
            upper=210000.0,
            changepoint_at=T0.astimezone(CEST) - timedelta(hours=2),
            detail="dropped by half",
        ),
        id="anomaly-full",
    ),
    pytest.param(
        Anomaly(
            id="a2",
            product="p",
            monitor="m",
            series={},
            ts=T0,
            state="recovered",
            kind="point",
            detector="zscore",
            score=0.0,
        ),
        id="anomaly-minimal",
    ),
    pytest.param(
        AlertEvent(
            fingerprint="3f1a9c0e",
            status="resolved",
            at=T0 + timedelta(hours=6),
            product="ad-model",
            monitor="hourly_impressions",
            receiver="ads-oncall",
            labels={"severity": "page"},
            annotations={"summary": "Impressions 91022/h"},
            starts_at=T0,
            ends_at=T0 + timedelta(hours=6),
            anomaly_id="a1",
            value=91022.0,
            score=6.25,
        ),
        id="alert-full",
    ),
    pytest.param(
        AlertEvent(
            fingerprint="f",
            status="firing",
            at=T0,
            product="p",
            monitor="m",
            receiver="r",
            labels={},
            annotations={},
            starts_at=T0,
        ),
        id="alert-minimal",
    ),
    pytest.param(
        DeadLetter(
            source="lupus.metrics",
            reason="record 1, field ts: Expected `datetime` with a timezone component",
            received_at=T0.astimezone(CEST),
            raw=b'\xff\x00{"ts": "2024-05-01T12:00:00"}',
            record_index=1,
            field="ts",
            rule="Expected `datetime` with a timezone component",
        ),
        id="deadletter-full",
    ),
    pytest.param(
        DeadLetter(source="lupus.labels", reason="message: empty message", received_at=T0, raw=b""),
        id="deadletter-minimal",
    ),
]


@pytest.mark.parametrize("instance", OUTPUT_INSTANCES)
def test_output_record_round_trips_through_schema(instance: msgspec.Struct) -> None:
    (topic,) = [TOPICS[n] for n, t in OUTPUT_TOPICS.items() if isinstance(instance, t)]
    encoded = msgspec.json.encode(instance)
    assert _schema_errors(topic, json.loads(encoded)) == []
    assert msgspec.json.decode(encoded, type=type(instance)) == instance


# --- the format checker itself ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("2024-05-01T12:00:00Z", True),
        ("2024-05-01t12:00:00.123456789z", True),
        ("2024-05-01T12:00:00-05:30", True),
        ("2024-05-01T12:00:00", False),
        ("2024-05-01 12:00:00Z", False),
        ("2024-05-01T12:00Z", False),
        ("2024-05-01", False),
        ("2024-13-01T12:00:00Z", False),
        ("2024-05-01T12:00:00+0200", False),
    ],
)
def test_date_time_format_requires_a_zone(text: str, ok: bool) -> None:
    assert FORMATS.conforms(text, "date-time") is ok


# --- load_topics errors ---------------------------------------------------------------------


def _copy(tmp_path: Path) -> Path:
    directory = tmp_path / "topics"
    shutil.copytree(TOPICS_DIR, directory)
    return directory


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "words"),
    [
        ("lupus.metrics", "partitions: 12", "partitions: 0", "partitions", ">= 1"),
        ("lupus.metrics", "partitions: 12", "partitons: 12", "partitons", "unknown field"),
        ("lupus.alerts", "partitions: 12", "", "partitions", "missing required field"),
        ("lupus.labels", "record_type: label", "record_type: metric", "record_type", "'label'"),
        ("lupus.sources", "record_type: source", "record_type: sources", "record_type", "Invalid"),
        ("lupus.anomalies", "name: lupus.anomalies", "name: lupus.anomaly", "name", "anomaly.yaml"),
        ("lupus.deadletter", "  type: object\n", "  type: array\n", "schema", "JSON Schema"),
        ("lupus.metrics", "policy: delete", "policy: [delete]", "config[...]", "Expected"),
    ],
)
def test_load_topics_names_file_and_field(
    tmp_path: Path, file: str, old: str, new: str, field: str, words: str
) -> None:
    directory = _copy(tmp_path)
    path = directory / f"{file}.yaml"
    _edit(path, old, new)
    with pytest.raises(TopicError) as info:
        load_topics(directory)
    assert info.value.file == str(path)
    assert info.value.field == field
    assert str(info.value).startswith(f"{path}: field {field}: ")
    assert words in str(info.value)


def test_load_topics_reports_missing_files(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    (directory / "lupus.alerts.yaml").unlink()
    with pytest.raises(TopicError, match=r"missing topic files: lupus\.alerts\.yaml"):
        load_topics(directory)


def test_load_topics_rejects_unknown_topics_and_bad_yaml(tmp_path: Path) -> None:
    directory = _copy(tmp_path)
    extra = directory / "lupus.extra.yaml"
    shutil.copy(directory / "lupus.alerts.yaml", extra)
    _edit(extra, "name: lupus.alerts", "name: lupus.extra")
    with pytest.raises(TopicError, match="unknown topic") as info:
        load_topics(directory)
    assert info.value.file == str(extra)
    extra.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(TopicError, match="invalid YAML"):
        load_topics(directory)
    with pytest.raises(TopicError, match="does not exist"):
        load_topics(tmp_path / "nowhere")


def test_examples_keep_timestamps_as_written() -> None:
    first = TOPICS["lupus.metrics"].examples.valid[0]
    assert first["ts"] == "2024-05-01T12:00:00Z"
