"""The name rule checked once per distinct name: the same verdicts as the regex on every
string, whatever was seen before."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import msgspec
import pytest
from jsonschema import Draft202012Validator

from lupus_stream.contracts import decode_message, names
from lupus_stream.contracts.records import INPUT_TYPES, Label, MetricPoint
from lupus_stream.contracts.topics import METRICS_TOPIC
from lupus_stream.monitors.spec import Name as SpecName
from tests.contracts.test_topics import TOPICS

TS = datetime(2024, 5, 1, tzinfo=UTC)


def test_every_name_field_of_the_input_types_is_found() -> None:
    found = {kind: names.name_fields(cls) for kind, cls in INPUT_TYPES.items()}
    assert found == {
        "metric": (("product", "name"), ("labels",)),
        "prediction": (("product", "model"), ("features", "segment")),
        "label": (("product", "model"), ()),
        "source": (("product", "source"), ()),
    }


NAMES = [
    ("orders", True),
    ("_x", True),
    ("p95.latency_ms", True),
    ("ns:metric-1", True),
    ("A9", True),
    ("é", False),
    ("aé", False),  # ASCII only, as JSON Schema's `\w` reads it
    ("a\n", False),  # `$` alone lets a final newline through
    ("a\t", False),
    ("1st", False),
    ("a b", False),
    ("-", False),
    ("", False),
]


@pytest.mark.parametrize(("name", "expected"), NAMES)
def test_verdict_before_and_after_the_name_is_known(name: str, expected: bool) -> None:
    record = MetricPoint(product="shop", name=name, ts=TS, value=1.0)
    for _ in range(2):  # the second time, a valid name comes from the set of known ones
        assert names.all_names_valid([record]) is expected
        assert (names.bad_name(record) is None) is expected


@pytest.mark.parametrize(("name", "expected"), NAMES)
def test_json_schema_and_monitor_names_give_the_same_verdicts(name: str, expected: bool) -> None:
    """The topics' JSON Schema for names and the monitor files' name rule agree with the
    decoder. The schema is checked with `jsonschema`, whose `pattern` is Python's
    `re.search`, where `$` also matches before a final newline: ECMA-262's `$` (what other
    JSON Schema readers use) does not, so for that one name the schema's verdict is the
    pattern's full match."""
    schema = TOPICS[METRICS_TOPIC].schema["$defs"]["name"]
    valid = Draft202012Validator(schema).is_valid(name)
    assert valid is (expected or name.endswith("\n"))
    assert (re.fullmatch(schema["pattern"], name) is not None) is expected
    try:
        msgspec.convert({"monitor": name}, type=_MonitorName)
    except msgspec.ValidationError:
        assert not expected
    else:
        assert expected


class _MonitorName(msgspec.Struct):
    monitor: SpecName


def test_a_bad_name_is_found_among_many_good_ones_of_mixed_types() -> None:
    good = [MetricPoint(product="shop", name=f"m{i}", ts=TS, value=1.0) for i in range(50)]
    labelled = Label(product="shop", model="ranker", request_id="r", ts=TS, label=1)
    bad = MetricPoint(product="shop", name="m1", ts=TS, value=1.0, labels={"bad key": "x"})
    assert names.all_names_valid([*good, labelled])
    assert not names.all_names_valid([*good, labelled, bad])
    assert names.bad_name(bad) == "labels[key]"


def test_the_set_of_known_names_starts_over_at_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(names, "KNOWN_NAMES_LIMIT", 3)
    monkeypatch.setattr(names, "_valid", set())
    records = [MetricPoint(product="shop", name=f"m{i}", ts=TS, value=1.0) for i in range(10)]
    assert names.all_names_valid(records)
    assert len(names._valid) <= 3
    assert names.bad_name(MetricPoint(product="shop", name="no good", ts=TS, value=1.0)) == "name"


def test_a_name_with_a_final_newline_is_a_dead_letter_with_its_field() -> None:
    good = (
        b'{"type":"metric","product":"shop","name":"orders","ts":"2024-05-01T00:00:00Z","value":1}'
    )
    bad = good.replace(b'"orders"', b'"orders\\n"')
    decoded = decode_message(b"[" + good + b"," + bad + b"]")
    assert len(decoded.records) == 1
    [error] = decoded.errors
    assert (error.index, error.field, error.rule) == (1, "name", names.NAME_RULE)
