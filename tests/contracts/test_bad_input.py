"""Bad input through `decode_message`: every problem becomes a precise RecordError.

Each case says how many records survive, and for every error: the record index (None for
the whole message), the field (None when no single field is at fault) and a keyword of the
rule. `describe()` must name the index and the field, so that a dead letter can be read
without the decoder at hand.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from lupus_stream.contracts.decode import decode_message
from lupus_stream.contracts.records import INPUT_TYPES, MetricPoint

DROP = object()  # marks a field to leave out of an example record
TS = "2024-05-01T12:00:00Z"


def _record(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **over}
    return {k: v for k, v in out.items() if v is not DROP}


def metric(**over: Any) -> dict[str, Any]:
    base = {"type": "metric", "product": "ad-model", "name": "impressions", "ts": TS, "value": 1.0}
    return _record(base, over)


def prediction(**over: Any) -> dict[str, Any]:
    base = {
        "type": "prediction",
        "product": "ad-model",
        "model": "ctr",
        "model_version": "v1",
        "request_id": "r1",
        "ts": TS,
        "prediction": 0.5,
    }
    return _record(base, over)


def label(**over: Any) -> dict[str, Any]:
    base = {
        "type": "label",
        "product": "ad-model",
        "model": "ctr",
        "request_id": "r1",
        "ts": TS,
        "label": 1,
    }
    return _record(base, over)


def source(**over: Any) -> dict[str, Any]:
    base = {
        "type": "source",
        "product": "ad-model",
        "source": "ads_click_log",
        "partition": "2024-05-01",
        "row_count": 10,
        "landed_at": TS,
    }
    return _record(base, over)


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


def with_literal(value: Any, literal: bytes) -> bytes:
    """JSON of `value` where the string "@" is replaced by a raw JSON literal."""
    data = js(value)
    assert data.count(b'"@"') == 1
    return data.replace(b'"@"', literal)


@dataclass(frozen=True)
class Err:
    index: int | None  # record index in a batch; None: the whole message / a single record
    field: str | None  # field path named by the error; None: no single field
    keyword: str  # must appear in the rule (case-insensitive)


@dataclass(frozen=True)
class Case:
    data: bytes
    records: int
    errors: list[Err]
    accept: tuple[str, ...] = tuple(INPUT_TYPES)
    known_products: frozenset[str] | None = None
    max_bytes: int = 1_048_576


KNOWN = frozenset({"ad-model", "sticker-recommender"})
GOOD = metric()

CASES = [
    # --- missing fields
    pytest.param(
        Case(js(metric(ts=DROP)), 0, [Err(None, "ts", "missing required field")]),
        id="missing-ts",
    ),
    pytest.param(
        Case(js(metric(value=DROP)), 0, [Err(None, "value", "missing required field")]),
        id="missing-value-null-must-be-explicit",
    ),
    pytest.param(
        Case(js(label(request_id=DROP)), 0, [Err(None, "request_id", "missing required")]),
        id="missing-request-id",
    ),
    pytest.param(
        Case(js(metric(type=DROP)), 0, [Err(None, "type", "missing required field")]),
        id="missing-type-in-mixed-stream",
    ),
    # --- wrong types
    pytest.param(
        Case(js(metric(value="12.5")), 0, [Err(None, "value", "got `str`")]),
        id="value-as-string",
    ),
    pytest.param(
        Case(js(metric(value=True)), 0, [Err(None, "value", "got `bool`")]),
        id="value-as-bool",
    ),
    pytest.param(
        Case(js(source(row_count="100")), 0, [Err(None, "row_count", "got `str`")]),
        id="row-count-as-string",
    ),
    pytest.param(
        Case(js(source(row_count=12.5)), 0, [Err(None, "row_count", "expected `int`")]),
        id="row-count-as-float",
    ),
    pytest.param(
        Case(js(metric(type=7)), 0, [Err(None, "type", "expected `str`")]),
        id="type-tag-not-a-string",
    ),
    pytest.param(
        Case(js(prediction(prediction={"score": 0.5})), 0, [Err(None, "prediction", "object")]),
        id="prediction-is-a-dict",
    ),
    pytest.param(
        Case(js(prediction(prediction=[3, 1])), 0, [Err(None, "prediction[0]", "got `int`")]),
        id="prediction-list-of-ints",
    ),
    pytest.param(
        Case(js(prediction(features={"f": [1]})), 0, [Err(None, "features.f", "array")]),
        id="feature-value-not-scalar",
    ),
    pytest.param(
        Case(js(metric(labels={"region": 1})), 0, [Err(None, "labels.region", "got `int`")]),
        id="label-value-not-a-string",
    ),
    pytest.param(
        Case(
            js(prediction(features={**{f"f{i}": 1.0 for i in range(5000)}, "bad": [1]})),
            0,
            [Err(None, "features.bad", "array")],
        ),
        id="feature-value-not-scalar-among-many",
    ),
    pytest.param(
        Case(
            with_literal(prediction(features="@"), b'{"a": [1], "a": 1, "b": 2, "c": 3}'),
            0,
            [Err(None, "features[...]", "array")],  # not a key that holds a good value
        ),
        id="feature-key-given-twice-first-bad",
    ),
    pytest.param(
        Case(
            js([metric(), prediction(features={"a": 1.0, "the key": {}, "z": 2.0})]),
            1,
            [Err(1, 'features["the key"]', "object")],
        ),
        id="feature-key-that-is-not-a-plain-name",
    ),
    pytest.param(
        Case(js(prediction(segment={"os": None})), 0, [Err(None, "segment.os", "got `null`")]),
        id="segment-value-null",
    ),
    pytest.param(
        Case(js(label(label=None)), 0, [Err(None, "label", "got `null`")]),
        id="label-null",
    ),
    # --- numbers JSON cannot hold
    pytest.param(
        Case(with_literal(metric(value="@"), b"1e400"), 0, [Err(None, "value", "out of range")]),
        id="value-1e400",
    ),
    pytest.param(
        Case(with_literal(metric(value="@"), b"-1e400"), 0, [Err(None, "value", "out of range")]),
        id="value-minus-1e400",
    ),
    pytest.param(
        Case(
            with_literal(source(row_count="@"), b"1e400"),
            0,
            [Err(None, "row_count", "out of range")],
        ),
        id="row-count-1e400",
    ),
    pytest.param(
        Case(js(metric(value=1.7e308)), 0, [Err(None, "value", "<= 1e+100")]),
        id="value-near-the-float-limit",
    ),
    pytest.param(
        Case(js([GOOD, metric(value=-2e100)]), 1, [Err(1, "value", ">= -1e+100")]),
        id="value-beyond-1e100-in-a-batch",
    ),
    pytest.param(
        Case(js(prediction(features={"f": 1e200})), 0, [Err(None, "features.f", "1e+100")]),
        id="feature-beyond-1e100",
    ),
    pytest.param(
        Case(js(label(label=-1e101)), 0, [Err(None, "label", "1e+100")]),
        id="label-beyond-1e100",
    ),
    pytest.param(
        Case(with_literal(metric(value="@"), b"NaN"), 0, [Err(None, None, "malformed")]),
        id="nan-literal",
    ),
    pytest.param(
        Case(with_literal(metric(value="@"), b"Infinity"), 0, [Err(None, None, "malformed")]),
        id="infinity-literal",
    ),
    # --- timestamps
    pytest.param(
        Case(js(metric(ts="2024-05-01T12:00:00")), 0, [Err(None, "ts", "timezone")]),
        id="ts-without-zone",
    ),
    pytest.param(
        Case(js([GOOD, metric(ts="9999-12-31T23:59:59-05:00")]), 1, [Err(1, "ts", "2200")]),
        id="ts-beyond-year-9999-in-utc",
    ),
    pytest.param(
        Case(js(metric(ts="0001-01-01T00:00:00+01:00")), 0, [Err(None, "ts", "1900")]),
        id="ts-before-year-1-in-utc",
    ),
    pytest.param(
        Case(js([metric(ts="2200-01-01T00:00:00Z"), GOOD]), 1, [Err(0, "ts", "2200")]),
        id="ts-at-the-upper-bound",
    ),
    pytest.param(
        Case(js([metric(ts="1900-01-01T00:00:00Z"), metric(value=1e100)]), 2, []),
        id="ts-and-value-at-the-bounds-that-are-accepted",
    ),
    pytest.param(
        Case(js(source(landed_at="1899-12-31T23:59:59Z")), 0, [Err(None, "landed_at", "1900")]),
        id="landed-at-before-1900",
    ),
    pytest.param(
        Case(js(source(landed_at="2024-05-01 06:00")), 0, [Err(None, "landed_at", "RFC3339")]),
        id="landed-at-without-seconds-and-zone",
    ),
    pytest.param(
        Case(js(metric(ts="2024-05-01")), 0, [Err(None, "ts", "RFC3339")]),
        id="ts-date-only",
    ),
    pytest.param(
        Case(js(metric(ts=1714564800)), 0, [Err(None, "ts", "expected `datetime`")]),
        id="ts-epoch-seconds",
    ),
    # --- constraints
    pytest.param(
        Case(js(metric(product="")), 0, [Err(None, "product", "length >= 1")]),
        id="empty-product",
    ),
    pytest.param(
        Case(js(metric(name="n" * 201)), 0, [Err(None, "name", "length <= 200")]),
        id="name-too-long",
    ),
    pytest.param(
        Case(js(metric(name="95th latency")), 0, [Err(None, "name", "regex")]),
        id="name-bad-pattern",
    ),
    pytest.param(
        Case(js(metric(labels={"ad slot": "top"})), 0, [Err(None, "labels[key]", "regex")]),
        id="label-name-bad-pattern",
    ),
    pytest.param(
        Case(js(metric(labels={"k": "v" * 1025})), 0, [Err(None, "labels.k", "length <=")]),
        id="label-value-too-long",
    ),
    pytest.param(
        Case(js(source(row_count=-1)), 0, [Err(None, "row_count", ">= 0")]),
        id="negative-row-count",
    ),
    pytest.param(
        Case(js(prediction(request_id="")), 0, [Err(None, "request_id", "length >= 1")]),
        id="empty-request-id",
    ),
    pytest.param(
        Case(js(source(partition="p" * 65)), 0, [Err(None, "partition", "length <= 64")]),
        id="partition-too-long",
    ),
    # --- tags and unknown fields
    pytest.param(
        Case(js(metric(type="metrics")), 0, [Err(None, "type", "invalid value 'metrics'")]),
        id="unknown-type-tag",
    ),
    pytest.param(
        Case(js(label()), 0, [Err(None, "type", "invalid value 'label'")], accept=("metric",)),
        id="wrong-type-for-topic",
    ),
    pytest.param(
        Case(js(metric(unit="count")), 0, [Err(None, "unit", "unknown field")]),
        id="unknown-extra-field",
    ),
    # --- products
    pytest.param(
        Case(
            js(metric(product="ad_model")),
            0,
            [Err(None, "product", "unknown product")],
            known_products=KNOWN,
        ),
        id="unknown-product",
    ),
    pytest.param(
        Case(
            js([metric(), metric(product="nope"), metric(product="sticker-recommender")]),
            2,
            [Err(1, "product", "unknown product 'nope'")],
            known_products=KNOWN,
        ),
        id="unknown-product-in-batch",
    ),
    pytest.param(
        Case(
            js([metric(ts="2024-05-01T12:00:00"), metric(product="nope")]),
            0,
            [Err(0, "ts", "timezone"), Err(1, "product", "unknown product")],
            known_products=KNOWN,
        ),
        id="bad-record-and-unknown-product-in-batch",
    ),
    # --- the message as a whole
    pytest.param(
        Case(js([metric()] * 5), 0, [Err(None, None, "exceeds 200")], max_bytes=200),
        id="oversized-message",
    ),
    pytest.param(
        Case(js(metric(product="@")).replace(b"@", b"\xff\xfe"), 0, [Err(None, None, "UTF-8")]),
        id="invalid-utf8",
    ),
    pytest.param(
        Case(js(metric())[:-10], 0, [Err(None, None, "truncated")]),
        id="truncated-record",
    ),
    pytest.param(
        Case(js([metric(), metric()])[:-10], 0, [Err(None, None, "truncated")]),
        id="truncated-batch",
    ),
    pytest.param(Case(b"", 0, [Err(None, None, "empty message")]), id="empty-message"),
    pytest.param(Case(b" \n\t", 0, [Err(None, None, "empty message")]), id="whitespace-only"),
    pytest.param(Case(b"null", 0, [Err(None, None, "got `null`")]), id="json-null"),
    pytest.param(Case(b"42", 0, [Err(None, None, "got `int`")]), id="number-not-object"),
    pytest.param(Case(b'"metric"', 0, [Err(None, None, "got `str`")]), id="string-not-object"),
    pytest.param(
        Case(js(metric()) + b"\n" + js(metric()), 0, [Err(None, None, "trailing characters")]),
        id="jsonl-lines-in-one-message",
    ),
    pytest.param(
        Case(b"\xef\xbb\xbf" + js(metric()), 0, [Err(None, None, "malformed")]),
        id="utf8-bom",
    ),
    pytest.param(
        Case(b"[" * 100_000 + b"]" * 100_000, 0, [Err(0, None, "expected `object`")]),
        id="deeply-nested-batch-of-one-array",
    ),
    pytest.param(
        Case(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 0, [Err(None, None, "too deeply")]),
        id="deeply-nested-record",
    ),
    pytest.param(
        Case(
            js([GOOD, "@", GOOD]).replace(b'"@"', b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
            2,
            [Err(1, None, "nested too deeply")],
        ),
        id="deeply-nested-record-among-good-ones",
    ),
    pytest.param(
        Case(
            js([GOOD, metric(name="a@"), GOOD]).replace(b"a@", b"a\xff"), 2, [Err(1, None, "UTF-8")]
        ),
        id="invalid-utf8-in-one-record-of-a-batch",
    ),
    pytest.param(
        Case(
            js([GOOD, metric(name="@"), GOOD]).replace(b'"@"', b'"\\ud800"'),
            2,
            [Err(1, None, "malformed")],
        ),
        id="lone-surrogate-escape-in-one-record-of-a-batch",
    ),
    pytest.param(
        Case(b'[{"type": "metric", "name": "x]"', 0, [Err(None, None, "malformed")]),
        id="batch-that-never-closes",
    ),
    pytest.param(
        Case(b"[}", 0, [Err(None, None, "malformed")]),
        id="brackets-that-do-not-pair",
    ),
    pytest.param(
        Case(js([GOOD])[:-1] + b"}", 0, [Err(None, None, "malformed")]),
        id="batch-closed-by-a-brace",
    ),
    pytest.param(
        Case(js([GOOD])[:-1] + b',"' + b'\\"' * 32_000 + b"]", 0, [Err(None, None, "malformed")]),
        id="string-that-never-closes-full-of-escaped-quotes",
    ),
    pytest.param(
        Case(
            js([GOOD])[:-1] + b",," + js(GOOD) + b",]",
            2,
            [Err(None, None, "empty items (nothing between commas) at 1, 3")],
        ),
        id="stray-commas",
    ),
    pytest.param(
        Case(
            b"[" + b"," * 3000 + b"]", 0, [Err(None, None, "at 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...")]
        ),
        id="a-message-of-commas-is-one-error",
    ),
    pytest.param(
        Case(
            js([metric(labels={"q": 'a"],[{,}\\'}), "@", GOOD]).replace(
                b'"@"', b'{"a":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
            ),
            2,
            [Err(1, None, "nested too deeply")],
        ),
        id="split-by-structure-skips-brackets-and-quotes-inside-strings",
    ),
    # --- batches: the good records still go through
    pytest.param(
        Case(
            js([metric(), metric(ts="2024-05-01T12:00:00"), metric(name="ctr")]),
            2,
            [Err(1, "ts", "timezone")],
        ),
        id="batch-one-bad-among-good",
    ),
    pytest.param(
        Case(
            js([source(row_count=-5), metric(), label(label=[1]), prediction(), source()]),
            3,
            [Err(0, "row_count", ">= 0"), Err(2, "label", "got `array`")],
        ),
        id="batch-mixed-types-two-bad",
    ),
    pytest.param(
        Case(
            js([metric(), metric(labels={"1st": "x"}), metric()]),
            2,
            [Err(1, "labels[key]", "regex")],
        ),
        id="batch-bad-label-name",
    ),
    pytest.param(
        Case(
            js([prediction(features={"ok": 1, "x y": 2}), prediction(segment={"-": "a"})]),
            0,
            [Err(0, "features[key]", "regex"), Err(1, "segment[key]", "regex")],
        ),
        id="batch-bad-feature-and-segment-names",
    ),
    pytest.param(
        Case(
            js([source(source="2024 log"), label(model="ctr v2"), metric(product="ad model")]),
            0,
            [Err(0, "source", "regex"), Err(1, "model", "regex"), Err(2, "product", "regex")],
        ),
        id="batch-bad-source-model-product-names",
    ),
    pytest.param(
        Case(js([metric(), None, 3]), 1, [Err(1, None, "got `null`"), Err(2, None, "got `int`")]),
        id="batch-with-null-and-number",
    ),
    pytest.param(
        Case(js([[metric()]]), 0, [Err(0, None, "got `array`")]),
        id="nested-batch",
    ),
    pytest.param(
        Case(js([metric(), [metric(), metric()]]), 1, [Err(1, None, "got `array`")]),
        id="nested-batch-after-good",
    ),
    pytest.param(
        Case(js([metric(), metric(type="nope", extra=1)]), 1, [Err(1, "type", "invalid value")]),
        id="batch-unknown-tag",
    ),
    pytest.param(
        Case(
            with_literal([metric(), metric(value="@")], b"1e400"),
            1,
            [Err(1, "value", "out of range")],
        ),
        id="batch-1e400",
    ),
    pytest.param(
        Case(
            js([metric(name=f"m{i}") for i in range(500)] + [metric(ts="bad")]),
            500,
            [Err(500, "ts", "RFC3339")],
        ),
        id="large-batch-last-bad",
    ),
    pytest.param(Case(b"[]", 0, []), id="empty-batch-is-nothing"),
]


def _check(case: Case) -> None:
    out = decode_message(
        case.data,
        accept=case.accept,
        known_products=case.known_products,
        max_bytes=case.max_bytes,
    )
    described = [error.describe() for error in out.errors]
    assert len(out.records) == case.records, described
    assert len(out.errors) == len(case.errors), described
    for error, expected in zip(out.errors, case.errors, strict=True):
        text = error.describe()
        assert error.index == expected.index, text
        assert error.field == expected.field, text
        if expected.index is None:
            assert text.startswith("message"), text
        else:
            assert text.startswith(f"record {expected.index}"), text
            assert error.raw, "a rejected record keeps its bytes for the dead-letter topic"
        if expected.field is not None:
            assert f"field {expected.field}:" in text, text
        assert expected.keyword.lower() in error.rule.lower(), text
        assert error.rule in text


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case) -> None:
    _check(case)


def test_good_records_keep_their_order_around_bad_ones() -> None:
    data = js(
        [metric(name="a"), metric(name="b", ts="x"), metric(name="c"), None, metric(name="d")]
    )
    out = decode_message(data, accept=("metric",))
    assert [r.name for r in out.records if isinstance(r, MetricPoint)] == ["a", "c", "d"]
    assert [e.index for e in out.errors] == [1, 3]


def test_missing_type_is_tolerated_on_a_single_type_topic() -> None:
    """msgspec only requires the tag to choose between types: a topic that accepts one
    type takes records without `type` (the topic schemas do not require it either)."""
    out = decode_message(js(metric(type=DROP)), accept=("metric",))
    assert out.errors == []
    assert len(out.records) == 1


def test_never_raises_on_damaged_messages() -> None:
    message = js([metric(), prediction(features={"a": 1, "b": None}), label(), source()])
    rng = random.Random(20240501)
    damaged = [message[:n] for n in range(len(message) + 1)]
    for _ in range(500):
        data = bytearray(message)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        damaged.append(bytes(data))
    damaged += [rng.randbytes(rng.randint(0, 64)) for _ in range(500)]
    clock = datetime(2024, 5, 1, 6, tzinfo=UTC)  # the examples' time is ahead of it by 6 h
    for data in damaged:
        for now in (None, clock):
            out = decode_message(data, known_products=KNOWN, now=now)
            assert out.records or out.errors or msgspec.json.decode(data) == []


def test_a_receiver_on_a_clock_refuses_events_more_than_a_day_ahead_of_it() -> None:
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    soon, later = "2026-03-03T11:59:59Z", "2026-03-03T12:00:00Z"  # 24 h after now
    data = js([metric(ts=soon), metric(ts=later), metric(ts="2199-01-01T00:00:00Z")])
    out = decode_message(data, now=now)
    assert [r.ts.isoformat() for r in out.records] == ["2026-03-03T11:59:59+00:00"]
    assert [(e.index, e.field) for e in out.errors] == [(1, "ts"), (2, "ts")]
    assert {e.rule for e in out.errors} == {  # one rule, whatever the clock says
        "Expected a time at most 24 h ahead of the receiver's clock (see received_at)"
    }
    assert len(decode_message(data).records) == 3  # a replay has no clock to compare with
    for ts in ("2300-01-01T00:00:00Z", "1899-06-01T00:00:00Z"):  # whatever the clock
        [error] = decode_message(js(metric(ts=ts)), now=now).errors
        assert error.rule == "Expected a time from 1900-01-01 to before 2200-01-01 UTC"
