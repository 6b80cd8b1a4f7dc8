"""The name rule checked once per distinct name: the same verdicts as the regex on every
string, whatever was seen before."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from lupus_stream.contracts import names
from lupus_stream.contracts.records import INPUT_TYPES, Label, MetricPoint

TS = datetime(2024, 5, 1, tzinfo=UTC)


def test_every_name_field_of_the_input_types_is_found() -> None:
    found = {kind: names.name_fields(cls) for kind, cls in INPUT_TYPES.items()}
    assert found == {
        "metric": (("product", "name"), ("labels",)),
        "prediction": (("product", "model"), ("features", "segment")),
        "label": (("product", "model"), ()),
        "source": (("product", "source"), ()),
    }


@pytest.mark.parametrize(
    "name", ["orders", "_x", "p95.latency_ms", "ns:metric-1", "é", "a\n", "1st", "a b", "-", ""]
)
def test_verdict_is_the_patterns_before_and_after_the_name_is_known(name: str) -> None:
    expected = re.search(names.NAME_PATTERN, name) is not None
    record = MetricPoint(product="shop", name=name, ts=TS, value=1.0)
    for _ in range(2):  # the second time, a valid name comes from the set of known ones
        assert names.all_names_valid([record]) is expected
        assert (names.bad_name(record) is None) is expected


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
