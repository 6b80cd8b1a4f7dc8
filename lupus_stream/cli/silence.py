"""`lupus-stream silence`: add, list and expire silences where the alert states live
(Redis when a broker is configured, the embedded runtime's state file otherwise)."""

from __future__ import annotations

import asyncio
import getpass
import re
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from lupus_stream.alerting.silences import Silence, new_silence
from lupus_stream.cli.alert_store import AlertStoreAccess, StoreError
from lupus_stream.cli.console import console, fail, silence_line
from lupus_stream.cli.options import SettingsOpt, StateDirOpt
from lupus_stream.durations import parse_duration
from lupus_stream.settings import Settings

silence_app = typer.Typer(help="Mute the notifications of matching alerts.", no_args_is_help=True)

_MATCHER = re.compile(r"(?P<name>[^=!~]+)(?P<op>=~|!~|!=|=)(?P<value>.*)", re.S)


def parse_matcher(text: str) -> tuple[str, str]:
    """`name=value`, `name!=value`, `name=~regex`, `name!~regex` -> (name, matcher spec)."""
    match = _MATCHER.fullmatch(text)
    if match is None:
        raise ValueError(f"matcher {text!r}: write name=value, name!=value, name=~re or name!~re")
    op = match["op"]
    return match["name"], match["value"] if op == "=" else op + match["value"]


def _time(text: str) -> float:
    """ISO 8601 with an offset (`2026-05-01T14:00:00Z`) as epoch seconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"time {text!r}: write ISO 8601, e.g. 2026-05-01T14:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} needs a UTC offset (Z or +02:00)")
    return moment.timestamp()


def add(
    store: AlertStoreAccess,
    matchers: list[str],
    duration: str | None,
    until: str | None,
    starts: str | None,
    comment: str,
    created_by: str | None,
) -> Silence:
    if (duration is None) == (until is None):
        raise ValueError("give exactly one of --for and --until")
    begin = time.time() if starts is None else _time(starts)
    end = begin + parse_duration(duration) if duration is not None else _time(str(until))
    specs: dict[str, str] = {}
    for text in matchers:
        name, spec = parse_matcher(text)
        if name in specs:
            raise ValueError(f"label {name} matched twice")
        specs[name] = spec
    silence = new_silence(specs, begin, end, created_by or getpass.getuser(), comment)
    asyncio.run(store.put_silence(silence))
    return silence


def expire(store: AlertStoreAccess, silence_id: str) -> Silence:
    now = time.time()
    for silence in asyncio.run(store.silences()):
        if silence.id == silence_id:
            if silence.ends_at <= now:
                raise ValueError(f"silence {silence_id} has already ended")
            # one not started yet ends before it starts: a span of a millisecond ago
            starts = min(silence.starts_at, now - 1e-3)
            ended = msgspec.structs.replace(silence, starts_at=starts, ends_at=now)
            asyncio.run(store.put_silence(ended))
            return ended
    raise ValueError(f"no silence {silence_id}")


def register(app: typer.Typer, settings_for: Callable[[Path | None], Settings]) -> None:
    """Add `silence add|list|expire` to `app`; `settings_for(path)` loads the settings."""

    @silence_app.command("add")
    def add_command(
        match: Annotated[
            list[str],
            typer.Option("--match", "-m", help="Label matcher: name=value, !=, =~ or !~ (RE2)."),
        ],
        comment: Annotated[str, typer.Option(help="Why (shown with the silence).")],
        duration: Annotated[str | None, typer.Option("--for", help="How long: 2h, 1d.")] = None,
        until: Annotated[str | None, typer.Option(help="End, ISO 8601 with offset.")] = None,
        starts: Annotated[str | None, typer.Option(help="Start (default: now).")] = None,
        created_by: Annotated[str | None, typer.Option("--by", help="Default: $USER.")] = None,
        data_dir: StateDirOpt = Path("lupus-data"),
        settings_file: SettingsOpt = None,
    ) -> None:
        """Mute matching alerts from now (or --starts) for --for, or until --until."""
        store = AlertStoreAccess(settings_for(settings_file), data_dir)
        try:
            silence = add(store, match, duration, until, starts, comment, created_by)
        except ValueError as exc:
            fail(exc, 2)
        except StoreError as exc:
            fail(exc, 1)
        console.print(silence_line(silence, time.time()))

    @silence_app.command("list")
    def list_command(
        show_all: Annotated[bool, typer.Option("--all", help="Expired ones too.")] = False,
        data_dir: StateDirOpt = Path("lupus-data"),
        settings_file: SettingsOpt = None,
    ) -> None:
        """The silences that have not ended (with --all, every one)."""
        now = time.time()
        try:
            silences = asyncio.run(
                AlertStoreAccess(settings_for(settings_file), data_dir).silences()
            )
        except StoreError as exc:
            fail(exc, 1)
        for silence in silences:
            if show_all or silence.ends_at > now:
                console.print(silence_line(silence, now))

    @silence_app.command("expire")
    def expire_command(
        silence_id: Annotated[str, typer.Argument(help="The silence's id (from list).")],
        data_dir: StateDirOpt = Path("lupus-data"),
        settings_file: SettingsOpt = None,
    ) -> None:
        """End a silence now: alerts it muted that still fire are notified."""
        try:
            silence = expire(AlertStoreAccess(settings_for(settings_file), data_dir), silence_id)
        except ValueError as exc:
            fail(exc, 2)
        except StoreError as exc:
            fail(exc, 1)
        console.print(silence_line(silence, time.time()))

    app.add_typer(silence_app, name="silence")
