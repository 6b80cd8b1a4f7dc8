"""Load product files with errors that name the file, the monitor and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import yaml

from lupus_stream import strict_yaml
from lupus_stream.monitors.spec import Catalog, FieldError, Monitor, ProductSpec


class MonitorError(ValueError):
    """A product file is invalid; the message says where and why."""

    def __init__(
        self, file: str, message: str, monitor: str | None = None, field: str | None = None
    ):
        self.file, self.monitor, self.field = file, monitor, field
        where = file
        if monitor:
            where += f": monitor {monitor!r}"
        if field:
            where += f": field {field}"
        super().__init__(f"{where}: {message}")


_PATH = re.compile(r"^(?P<rule>.*?) - at (?:`(?P<key>key)` in )?`\$(?P<path>[^`]*)`$", re.S)
_MONITOR_INDEX = re.compile(r"^\.monitors\[(\d+)\]\.?")
_NAMED_FIELD = re.compile(r"(?:missing required|contains unknown) field `([^`]+)`")


def _locate(raw: Any, error: msgspec.ValidationError) -> tuple[str, str | None, str | None]:
    """Split a msgspec error into (rule, monitor name, field path inside the monitor)."""
    text = str(error)
    match = _PATH.match(text)
    if match is None:  # an error in the top-level mapping itself has no `- at` suffix
        rule, path = text, ""
    else:
        rule, path = match.group("rule"), match.group("path")
        if match.group("key"):  # a mapping key, not a value, broke the rule
            rule = f"invalid key: {rule}"
    monitor = None
    index_match = _MONITOR_INDEX.match(path)
    if index_match:
        index = int(index_match.group(1))
        path = path[index_match.end() :]
        monitor = _monitor_name(raw, index)
    named = _NAMED_FIELD.search(rule)
    cause = error.__cause__
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    elif isinstance(cause, FieldError):
        path = f"{path}.{cause.field}" if path else cause.field
    return rule, monitor, path.lstrip(".") or None


def _monitor_name(raw: Any, index: int) -> str:
    try:
        name = raw["monitors"][index]["name"]
    except (KeyError, IndexError, TypeError):
        name = None
    return str(name) if name else f"#{index + 1}"


def load_product(path: Path | str) -> ProductSpec:
    """Parse and validate one product file."""
    path = Path(path)
    file = str(path)
    try:
        raw = strict_yaml.load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MonitorError(file, f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise MonitorError(file, f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise MonitorError(file, "expected a mapping with product, owner, receiver, monitors")
    try:
        spec = msgspec.convert(raw, type=ProductSpec)
    except msgspec.ValidationError as exc:
        rule, where, field = _locate(raw, exc)
        raise MonitorError(file, rule, where, field) from exc
    monitors = []
    seen: set[str] = set()
    for parsed in spec.monitors:
        if parsed.name in seen:
            raise MonitorError(file, "duplicate monitor name", parsed.name, "name")
        seen.add(parsed.name)
        monitor = msgspec.structs.replace(parsed, product=spec.product)
        _check_detector(file, monitor)
        monitors.append(monitor)
    return msgspec.structs.replace(spec, monitors=monitors)


def _check_detector(file: str, monitor: Monitor) -> None:
    from lupus_stream.detection.registry import DetectorConfigError, validate

    try:
        validate(monitor.detector_kind, monitor.detector_params, monitor.signal.input_kind)
    except DetectorConfigError as exc:
        field = "detector" + (f".{exc.field}" if exc.field else "")
        raise MonitorError(file, exc.rule, monitor.name, field) from exc


def load_catalog(directory: Path | str) -> Catalog:
    """Load every `*.yaml` / `*.yml` file of a directory; product names must be unique."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MonitorError(str(directory), "monitor directory does not exist")
    products: dict[str, ProductSpec] = {}
    files: dict[str, str] = {}
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in paths:
        spec = load_product(path)
        if spec.product in products:
            first = files[spec.product]
            raise MonitorError(str(path), f"product already defined in {first}", field="product")
        products[spec.product] = spec
        files[spec.product] = str(path)
    return Catalog(products=products, files=files)
