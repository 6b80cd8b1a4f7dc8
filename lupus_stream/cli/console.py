"""How alert events and dead letters look on the console."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from lupus_stream.contracts import AlertEvent, DeadLetter

console = Console(highlight=False, soft_wrap=True)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def alert_line(event: AlertEvent) -> Text:
    firing = event.status == "firing"
    style = "bold red" if firing else "bold green"
    severity = event.labels.get("severity", "")
    series = ",".join(
        f"{k}={v}" for k, v in event.labels.items() if k not in ("alertname", "product", "severity")
    )
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
    return text


def deadletter_line(entry: DeadLetter) -> Text:
    text = Text()
    text.append("DEAD-LETTER ", style="bold magenta")
    text.append(f"{entry.source}: {entry.reason}")
    return text
