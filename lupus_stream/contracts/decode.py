"""Decoding of input messages: one record or a batch (JSON list) per message.

The fast path decodes a whole message with one typed decoder. Only when that fails is
the message split into its records (as their original bytes) so that each bad record
gets its own error and the good ones in the same batch still go through.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import msgspec

from lupus_stream.contracts.names import NAME_RULE, all_names_valid, bad_name, by_type
from lupus_stream.contracts.records import (
    EARLIEST,
    INPUT_TYPES,
    LATEST,
    TIME_RULE,
    InputBase,
    InputRecord,
)

MAX_MESSAGE_BYTES = 1_048_576
_AT_PATH = re.compile(r"^(?P<rule>.*?)(?: - at (?P<key>`key` in )?`(?P<path>[^`]*)`)?$", re.S)
# Errors about one named field of an object: the field is in the rule, not in the path.
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `([^`]+)`")
_TOO_DEEP = "JSON nested too deeply"
_PRODUCT = operator.attrgetter("product")
# how far ahead of its clock a receiver on wall-clock time accepts an event: a record
# stamped in the future would make every later point of its series a late one
FUTURE_SKEW = timedelta(days=1)
FUTURE_RULE = (
    f"Expected a time at most {FUTURE_SKEW.total_seconds() / 3600:g} h ahead of the "
    "receiver's clock (see received_at)"
)


@dataclass(frozen=True, slots=True)
class RecordError:
    """Why one record (or the whole message, when `index` is None) was rejected."""

    rule: str
    index: int | None = None
    field: str | None = None
    raw: bytes = b""

    def describe(self) -> str:
        where = "message" if self.index is None else f"record {self.index}"
        if self.field:
            where += f", field {self.field}"
        return f"{where}: {self.rule}"


@dataclass(slots=True)
class Decoded:
    records: list[InputRecord] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)
    # where each record stood in a batch message, when some were rejected (empty: the
    # records are the whole message, in order)
    positions: list[int] = field(default_factory=list)

    def position(self, k: int) -> int:
        """Index in the message's batch of the k-th record decoded."""
        return self.positions[k] if self.positions else k

    def origin(self, k: int, message: bytes) -> tuple[bytes, int | None]:
        """What a dead letter about the k-th record keeps: (its bytes, its index in the
        batch), or (the message, None) when the record was the whole message."""
        if len(self.records) == 1 and not self.errors:
            return message, None
        return _encoder.encode(self.records[k]), self.position(k)


@cache
def _decoder(accept: tuple[str, ...]) -> msgspec.json.Decoder[Any]:
    types = tuple(INPUT_TYPES[name] for name in accept)
    one: Any = types[0] if len(types) == 1 else _union(types)
    return msgspec.json.Decoder(one | list[one])


def _union(types: tuple[type[InputBase], ...]) -> Any:
    out: Any = types[0]
    for t in types[1:]:
        out = out | t
    return out


@cache
def _single_decoder(accept: tuple[str, ...]) -> msgspec.json.Decoder[Any]:
    types = tuple(INPUT_TYPES[name] for name in accept)
    return msgspec.json.Decoder(types[0] if len(types) == 1 else _union(types))


def _split(error: Exception, index: int | None) -> tuple[str, str | None]:
    """Turn a msgspec error into (rule, field path without the record prefix)."""
    text = str(error)
    match = _AT_PATH.match(text)
    if match is None:  # pragma: no cover - the pattern matches any text
        return text, None
    rule, path = match.group("rule"), match.group("path")
    named = _NAMED_FIELD.search(rule)
    if path is None:
        return rule, named.group(1) if named else None
    path = re.sub(r"^\$(\[\d+\])?\.?", "", path) if index is not None else path.lstrip("$.")
    if match.group("key"):  # the key of a mapping, e.g. a label name, is invalid
        path = f"{path}[key]"
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return rule, path or None


def decode_message(
    data: bytes,
    *,
    accept: Iterable[str] = tuple(INPUT_TYPES),
    known_products: Collection[str] | None = None,
    max_bytes: int = MAX_MESSAGE_BYTES,
    now: datetime | None = None,
) -> Decoded:
    """Decode one message; never raises on bad input, every problem becomes a RecordError.

    `now`: the receiver's clock, when it runs on one; events more than `FUTURE_SKEW`
    after it are refused."""
    accept = tuple(accept)
    bounds = _UNBOUNDED if now is None else _Bounds(min(LATEST, now + FUTURE_SKEW), True)
    if len(data) > max_bytes:
        return Decoded(errors=[RecordError(f"message of {len(data)} bytes exceeds {max_bytes}")])
    try:
        value = _decoder(accept).decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError, RecursionError):
        return _decode_each(data, accept, known_products, bounds)
    records = value if isinstance(value, list) else [value]
    if not all_names_valid(records) or not _times_in_range(records, bounds.latest):
        return _decode_each(data, accept, known_products, bounds)  # which record, which field
    if known_products is None or all(map(known_products.__contains__, set(map(_PRODUCT, records)))):
        return Decoded(records=records)
    out = Decoded()
    for i, record in enumerate(records):
        if record.product in known_products:
            out.records.append(record)
            out.positions.append(i)
        else:
            index = i if isinstance(value, list) else None
            raw = msgspec.json.encode(record)
            out.errors.append(_unknown_product(record.product, index, raw))
    return out


@dataclass(frozen=True, slots=True)
class _Bounds:
    latest: datetime  # event times must be before this
    clocked: bool  # `latest` comes from the receiver's clock

    def rule(self, t: datetime) -> str | None:
        if EARLIEST <= t < self.latest:
            return None
        if self.clocked and EARLIEST <= t < LATEST:
            return FUTURE_RULE
        return TIME_RULE


_UNBOUNDED = _Bounds(LATEST, False)


def _times_in_range(records: list[InputBase], latest: datetime) -> bool:
    for cls, of_cls in by_type(records):
        times = list(map(operator.attrgetter(cls.time_field), of_cls))
        if times and not (min(times) >= EARLIEST and max(times) < latest):
            return False
    return True


def _unknown_product(product: str, index: int | None, raw: bytes) -> RecordError:
    return RecordError(f"unknown product {product!r}", index, "product", raw)


def _decode_each(
    data: bytes, accept: tuple[str, ...], known_products: Collection[str] | None, bounds: _Bounds
) -> Decoded:
    stripped = data.lstrip(_JSON_SPACE)
    if not stripped:
        return Decoded(errors=[RecordError("empty message")])
    if not stripped.startswith(b"["):
        return _decode_one(data, None, accept, known_products, bounds)
    try:
        items: list[bytes] = list(map(bytes, msgspec.json.decode(data, type=list[msgspec.Raw])))
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        # a record too deep or with a broken escape: the batch's structure may still hold
        split = _split_batch(stripped)
        if split is None:
            if isinstance(exc, RecursionError):
                return Decoded(errors=[RecordError(_TOO_DEEP)])
            return Decoded(errors=[RecordError(f"malformed JSON: {exc}")])
        items = split
    out = Decoded()
    empty = [i for i, item in enumerate(items) if not item]  # `[a,,b]` or `[a,]`
    if empty:  # one error for all: each would keep the whole message
        shown = ", ".join(map(str, empty[:10])) + (", ..." if len(empty) > 10 else "")
        out.errors.append(RecordError(f"empty items (nothing between commas) at {shown}"))
    for i, item in enumerate(items):
        if not item:
            continue
        one = _decode_one(item, i, accept, known_products, bounds)
        out.records.extend(one.records)
        out.positions.extend([i] * len(one.records))
        out.errors.extend(one.errors)
    return out


_JSON_SPACE = b" \t\r\n"
# the tokens that give a JSON text its structure: strings (whatever they hold) and
# brackets; a string that never closes runs to the end (possessive: each byte is looked at
# once, however many quotes and backslashes follow)
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*+(?:(?P<closed>")|\\?\Z)|[\[\]{},]', re.S)
_CLOSES = {b"]": b"[", b"}": b"{"}


def _split_batch(data: bytes) -> list[bytes] | None:
    """The items of a JSON array by its brackets, commas and strings alone, without
    decoding them (so without recursion or escape rules); None unless the brackets pair up
    into one array, every string closes and nothing follows the array."""
    items: list[bytes] = []
    opened: list[bytes] = []
    start = 1
    for token in _STRUCTURE.finditer(data):
        char = token.group()[:1]
        if char == b'"':
            if token.group("closed") is None:
                return None  # a string that never closes
        elif char in (b"[", b"{"):
            opened.append(char)
        elif char in _CLOSES:
            if not opened or opened.pop() != _CLOSES[char]:
                return None
            if not opened:
                last = data[start : token.start()].strip(_JSON_SPACE)
                if last or items:
                    items.append(last)
                return items if not data[token.end() :].strip(_JSON_SPACE) else None
        elif len(opened) == 1:  # a comma between items
            items.append(data[start : token.start()].strip(_JSON_SPACE))
            start = token.end()
    return None


def _decode_one(
    raw: bytes,
    index: int | None,
    accept: tuple[str, ...],
    known_products: Collection[str] | None,
    bounds: _Bounds,
) -> Decoded:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Decoded(errors=[RecordError(f"invalid UTF-8 at byte {exc.start}", index, None, raw)])
    decoder = _single_decoder(accept)
    try:
        record = decoder.decode(raw)
    except msgspec.ValidationError as exc:
        rule, path = _split(exc, index)
        if path is not None and _ANY_KEY in path:
            path = _name_the_key(raw, rule, path, index, decoder)
        return Decoded(errors=[RecordError(rule, index, path, raw)])
    except (msgspec.DecodeError, UnicodeDecodeError, ValueError) as exc:
        return Decoded(errors=[RecordError(f"malformed JSON: {exc}", index, None, raw)])
    except RecursionError:
        return Decoded(errors=[RecordError(_TOO_DEEP, index, None, raw)])
    field_path = bad_name(record)
    if field_path is not None:
        return Decoded(errors=[RecordError(NAME_RULE, index, field_path, raw)])
    time_rule = bounds.rule(getattr(record, record.time_field))
    if time_rule is not None:
        return Decoded(errors=[RecordError(time_rule, index, record.time_field, raw)])
    if known_products is not None and record.product not in known_products:
        return Decoded(errors=[_unknown_product(record.product, index, raw)])
    return Decoded(records=[record])


_ANY_KEY = "[...]"  # how msgspec writes "a value of this mapping" in an error path
_STEP = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _name_the_key(
    raw: bytes, rule: str, path: str, index: int | None, decoder: msgspec.json.Decoder[Any]
) -> str:
    """`features[...]` -> `features.age`: msgspec does not say which value of a mapping
    failed, so decode the record again with that mapping cut to half its entries, and so
    on (a bisection: a few decodes, however many entries). Error path only."""
    head, _, tail = path.partition(_ANY_KEY)
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # deeper than the typed decode went
        return path
    parent: Any = None
    step: str | int | None = None
    mapping: Any = doc
    for name, number in _STEP.findall(head):
        parent, step = mapping, name if name else int(number)
        try:
            mapping = mapping[step]
        except (KeyError, IndexError, TypeError):
            return path
    if parent is None or not isinstance(mapping, dict) or not mapping:
        return path

    def fails(entries: list[tuple[str, Any]]) -> bool:  # as the record did, word for word
        parent[step] = dict(entries)
        try:
            decoder.decode(_encoder.encode(doc))
        except msgspec.ValidationError as exc:
            return _split(exc, index) == (rule, path)
        return False

    entries = list(mapping.items())
    while len(entries) > 1:
        half = entries[: len(entries) // 2]
        entries = half if fails(half) else entries[len(half) :]
    if not fails(entries):  # a key given twice: the typed decode read another value
        return path
    key = entries[0][0]
    named = f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{msgspec.json.encode(key).decode()}]"
    return f"{head}{named}{tail}"


_encoder = msgspec.json.Encoder()


def encode_records(records: Iterable[msgspec.Struct]) -> bytes:
    """Encode records as one batch message."""
    return _encoder.encode(list(records))
