"""Label matchers: `value` (equal), `!=value`, `=~regex`, `!~regex` (fully anchored)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Matcher = Callable[[str | None], bool]


def compile_matcher(spec: str) -> Matcher:
    if spec.startswith("=~"):
        pattern = re.compile(spec[2:])
        return lambda v: v is not None and pattern.fullmatch(v) is not None
    if spec.startswith("!~"):
        pattern = re.compile(spec[2:])
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
