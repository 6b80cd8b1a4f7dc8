"""`lupus-stream demo`: generated traffic for the example products, replayed live."""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lupus_stream.cli.console import alert_line, console
from lupus_stream.contracts import AlertEvent
from lupus_stream.demo.generate import scenario
from lupus_stream.demo.replay import replay, verify
from lupus_stream.monitors import load_catalog


def run_demo(detectors: Path, out: Path | None, seed: int) -> bool:
    started = time.monotonic()
    catalog = load_catalog(detectors)
    out_dir = out or Path(tempfile.mkdtemp(prefix="lupus-demo-out-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"[bold]lupus-stream demo[/]: {len(catalog.products)} products, "
        f"{len(catalog.monitors)} monitors from {detectors}/"
    )
    sc = scenario(seed)
    console.print(
        f"generated {len(sc.records):,} records, {sc.start:%Y-%m-%d} to "
        f"{sc.end:%Y-%m-%d}; injected incidents:"
    )
    for inc in sc.incidents:
        console.print(f"  - [bold]{inc.name}[/] on {inc.start:%Y-%m-%d}: {inc.description}")
    with Progress(
        TextColumn("[bold blue]replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("event time {task.fields[now]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("replay", total=len(sc.records), now="")

        def on_alert(event: AlertEvent) -> None:
            progress.console.print(alert_line(event))

        def on_progress(n: int, t: float) -> None:
            now = f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M}"
            progress.update(task, advance=n, now=now)

        pipeline = replay(sc, catalog, out_dir, on_alert, on_progress)
    result = verify(sc, out_dir / "alerts.jsonl")
    counts = pipeline.counts
    table = Table(title="incidents")
    table.add_column("incident")
    table.add_column("monitor")
    table.add_column("first alert")
    for inc in sc.incidents:
        events = result.caught.get(inc.name)
        first = f"[green]{events[0].at:%Y-%m-%d %H:%M}[/]" if events else "[red]missed[/]"
        table.add_row(inc.name, inc.monitor, first)
    console.print(table)
    console.print(
        f"{counts.records:,} records, {counts.anomalies:,} anomalous verdicts, "
        f"{counts.firing} alerts fired, {counts.resolved} resolved, "
        f"{counts.deadlettered} dead-lettered (see deadletter.jsonl)"
    )
    for event in result.false_alarms:
        console.print("[red]alert outside any incident:[/]", alert_line(event))
    console.print(
        f"outputs in {out_dir}/ (anomalies.jsonl, alerts.jsonl, deadletter.jsonl); "
        f"took {time.monotonic() - started:.1f} s"
    )
    if result.ok:
        console.print("[bold green]every incident alerted, no alert in clean periods[/]")
    return result.ok
