"""Command-line options several commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SettingsOpt = Annotated[
    Path | None,
    typer.Option("--settings", envvar="LUPUS_SETTINGS", help="Settings file (YAML)."),
]
StateDirOpt = Annotated[
    Path,
    typer.Option(
        "--data-dir", envvar="LUPUS_DATA_DIR", help="State of the embedded runtime (no broker)."
    ),
]
