"""Label matchers: `value` (equal), `!=value`, `=~regex`, `!~regex` (fully anchored).

Regular expressions are RE2's (as in Prometheus and Alertmanager): matching takes time
linear in the label value, so no pattern in a monitor file can let one record hang the
worker; constructs RE2 lacks (backreferences, lookaround) are refused when the file loads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import re2

Matcher = Callable[[str | None], bool]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error goes to the caller, not to stderr


def compile_regex(pattern: str) -> Any:
    """The compiled pattern; ValueError saying why RE2 refuses it."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(str(reason)) from None


def split_matcher(spec: str) -> tuple[str, str]:
    """(operator, operand): `=~db-.*` -> (`=~`, `db-.*`); a plain value -> (`=`, value)."""
    return (spec[:2], spec[2:]) if spec[:2] in ("=~", "!~", "!=") else ("=", spec)


def compile_matcher(spec: str) -> Matcher:
    """A label's value (None when it is missing) -> whether it matches. A missing label
    reads as the empty string, as in Prometheus and Alertmanager: `""` matches it,
    `!=""` asks for the label, and a silence means here what its mirror means there."""
    op, operand = split_matcher(spec)
    if op == "=~":
        pattern = compile_regex(operand)
        return lambda v: pattern.fullmatch(v or "") is not None
    if op == "!~":
        pattern = compile_regex(operand)
        return lambda v: pattern.fullmatch(v or "") is None
    if op == "!=":
        return lambda v: (v or "") != operand
    return lambda v: (v or "") == operand


def compile_matchers(specs: Mapping[str, str]) -> Callable[[Mapping[str, str]], bool]:
    compiled = [(name, compile_matcher(spec)) for name, spec in specs.items()]
    if not compiled:
        return lambda labels: True
    return lambda labels: all(match(labels.get(name)) for name, match in compiled)
