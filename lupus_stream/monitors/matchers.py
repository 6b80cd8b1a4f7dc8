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


def compile_matcher(spec: str) -> Matcher:
    if spec.startswith("=~"):
        pattern = compile_regex(spec[2:])
        return lambda v: v is not None and pattern.fullmatch(v) is not None
    if spec.startswith("!~"):
        pattern = compile_regex(spec[2:])
        return lambda v: v is None or pattern.fullmatch(v) is None
    if spec.startswith("!="):
        other = spec[2:]
        return lambda v: v != other
    return lambda v: v == spec


def compile_matchers(specs: Mapping[str, str]) -> Callable[[Mapping[str, str]], bool]:
    compiled = [(name, compile_matcher(spec)) for name, spec in specs.items()]
    if not compiled:
        return lambda labels: True
    return lambda labels: all(match(labels.get(name)) for name, match in compiled)
