"""The name rule of the input contracts, checked once per distinct name.

Product, signal, model, source, label, feature and segment names must match
`NAME_PATTERN`. Declared as a msgspec constraint, the pattern would be tested with a
regular expression on every string of every record: five times the cost of decoding the
rest of a metric point. Names repeat endlessly (a few products, metrics and label keys),
so the record types carry the pattern in their JSON Schema only, and `all_names_valid`
checks the names of decoded records against a set of names already found valid
(`bad_name` then says which field of a record breaks the rule).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cache
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

# ASCII spelled out: JSON Schema's regular expressions read `\w` as ASCII, Python's as
# any Unicode letter, and both must give the same verdict
NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]*$"
# the same rule for a Python search (msgspec's `pattern`): `$` alone would accept a name
# followed by a newline
NAME_PATTERN_WHOLE = NAME_PATTERN.removesuffix("$") + r"\Z"
# worded as msgspec words its own constraint errors
NAME_RULE = f"Expected `str` matching regex {NAME_PATTERN!r}"
KNOWN_NAMES_LIMIT = 100_000  # distinct valid names remembered before starting over

_matches = re.compile(NAME_PATTERN_WHOLE).search
_valid: set[str] = set()
_NONE: frozenset[str] = frozenset()


def _is_name(node: Any) -> bool:
    return isinstance(node, msgspec.inspect.Metadata) and (
        (node.extra_json_schema or {}).get("pattern") == NAME_PATTERN
    )


@cache
def name_fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(fields holding a name, mapping fields whose keys are names) of a record type."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    scalars, keyed = [], []
    for f in info.fields:
        if _is_name(f.type):
            scalars.append(f.name)
        elif isinstance(f.type, msgspec.inspect.DictType) and _is_name(f.type.key_type):
            keyed.append(f.name)
    return tuple(scalars), tuple(keyed)


@cache
def _getters(cls: type[msgspec.Struct]) -> tuple[tuple[str, Callable[[Any], Any], bool], ...]:
    scalars, keyed = name_fields(cls)
    return tuple((f, operator.attrgetter(f), False) for f in scalars) + tuple(
        (f, operator.attrgetter(f), True) for f in keyed
    )


def _remember(names: Iterable[str]) -> bool:
    """Whether every name is valid; the valid ones are remembered."""
    ok = True
    for name in names:
        if _matches(name):
            if len(_valid) >= KNOWN_NAMES_LIMIT:
                _valid.clear()
            _valid.add(name)
        else:
            ok = False
    return ok


def by_type(records: Sequence[T]) -> Iterator[tuple[type[T], Sequence[T]]]:
    """(type, its records) for each exact type in a batch; a batch of one type (the usual
    case) is not copied. The decoder's whole-batch checks go type by type."""
    kinds = set(map(type, records))
    for cls in kinds:
        yield cls, records if len(kinds) == 1 else [r for r in records if type(r) is cls]


def all_names_valid(records: Sequence[msgspec.Struct]) -> bool:
    """Whether every name of these records follows the rule (the common case, fast)."""
    for cls, of_cls in by_type(records):
        for _, get, is_keyed in _getters(cls):
            values = map(get, of_cls)
            names = _NONE.union(*values) if is_keyed else set(values)
            if not names <= _valid and not _remember(names - _valid):
                return False
    return True


def bad_name(record: msgspec.Struct) -> str | None:
    """The field path of the record's first name that breaks the rule (None: all good);
    a mapping key is `field[key]`, as in the decoder's other errors."""
    for field, get, is_keyed in _getters(type(record)):
        value = get(record)
        for name in value if is_keyed else (value,):
            if name not in _valid and not _remember((name,)):
                return f"{field}[key]" if is_keyed else field
    return None
