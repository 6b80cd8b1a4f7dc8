"""How alert events, dead letters and silences look on the console."""

from __future__ import annotations

import json
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from lupus_stream.alerting.lifecycle import AlertState, to_datetime
from lupus_stream.alerting.silences import Silence
from lupus_stream.contracts import AlertEvent, DeadLetter
from lupus_stream.monitors.matchers import split_matcher

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(problem: object, code: int) -> NoReturn:
    """Say what went wrong on stderr and end the command with `code`."""
    errors.print(f"[red]error:[/] {problem}")
    raise typer.Exit(code)


def _series(labels: dict[str, str]) -> str:
    """The labels that tell series apart (the alert's name, product and severity left out)."""
    return ",".join(
        f"{k}={v}" for k, v in labels.items() if k not in ("alertname", "product", "severity")
    )


def alert_line(event: AlertEvent) -> Text:
    firing = event.status == "firing"
    style = "dim" if event.silenced_by else "bold red" if firing else "bold green"
    severity = event.labels.get("severity", "")
    series = _series(event.labels)
    text = Text()
    text.append(f"{event.at:%Y-%m-%d %H:%M} ", style="dim")
    text.append(f"{event.status.upper():8}", style=style)
    text.append(f" [{severity}] ", style="yellow" if severity == "page" else "cyan")
    text.append(event.monitor, style="bold")
    if series:
        text.append(f" {{{series}}}", style="dim")
    summary = event.annotations.get("summary")
    if summary and firing:
        text.append(f"  {summary}")
    if event.silenced_by:
        text.append(f"  (silenced by {', '.join(event.silenced_by)})", style="dim")
    return text


def state_line(state: AlertState, silenced_now: tuple[str, ...] = ()) -> Text:
    """One pending or firing alert as `lupus-stream alerts` lists it, with the silences
    that muted its last transition or mute it now."""
    since = state.active_since if state.status == "firing" else state.pending_since
    series = _series(state.labels)
    text = Text()
    text.append(
        f"{state.status.upper():8}", style="bold red" if state.status == "firing" else "yellow"
    )
    text.append(
        f" since {to_datetime(since):%Y-%m-%d %H:%M} " if since is not None else " ", style="dim"
    )
    text.append(f"[{state.labels.get('severity', '')}] ")
    text.append(state.monitor, style="bold")
    if series:
        text.append(f" {{{series}}}", style="dim")
    text.append(f"  -> {state.receiver}", style="dim")
    summary = state.annotations.get("summary")
    if summary:
        text.append(f"  {summary}")
    silenced = dict.fromkeys((*state.silenced_by, *silenced_now))
    if silenced:
        text.append(f"  (silenced by {', '.join(silenced)})", style="dim")
    return text


def _matcher(name: str, spec: str) -> str:
    """As PromQL writes one: `region="eu"`, `region!="us"`, `host=~"db-.*"`."""
    op, value = split_matcher(spec)
    return f"{name}{op}{json.dumps(value)}"


def silence_line(silence: Silence, now: float) -> Text:
    matchers = ",".join(_matcher(name, spec) for name, spec in silence.matchers.items())
    if silence.ends_at <= now:
        state = "expired"
    else:
        state = "active" if silence.starts_at <= now else "pending"
    starts, ends = to_datetime(silence.starts_at), to_datetime(silence.ends_at)
    text = Text()
    text.append(f"{silence.id} ", style="bold")
    text.append(f"{state:8}", style="green" if state == "active" else "dim")
    text.append(f" {{{matchers}}} ")
    text.append(f"{starts:%Y-%m-%d %H:%M} .. {ends:%Y-%m-%d %H:%M} UTC", style="dim")
    if silence.created_by or silence.comment:
        text.append(f"  {silence.created_by}: {silence.comment}".rstrip(": "))
    return text


def deadletter_line(entry: DeadLetter) -> Text:
    text = Text()
    text.append("DEAD-LETTER ", style="bold magenta")
    text.append(f"{entry.source}: {entry.reason}")
    return text
