"""The `lupus-stream` command."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Annotated

import typer

from lupus_stream.cli.console import alert_line, console, deadletter_line, errors
from lupus_stream.cli.notify import register as register_notify
from lupus_stream.cli.notify import register_alerts
from lupus_stream.cli.options import SettingsOpt
from lupus_stream.cli.silence import register as register_silences
from lupus_stream.contracts.topics import TopicError, TopicSpec, load_topics
from lupus_stream.monitors import Catalog, MonitorError, load_catalog
from lupus_stream.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Streaming monitor for machine-learning products.",
)

DetectorsOpt = Annotated[
    Path,
    typer.Option("--detectors", "-d", envvar="LUPUS_DETECTORS", help="Monitor definitions."),
]
MonitorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--detectors",
        "-d",
        envvar="LUPUS_DETECTORS",
        help="Monitor definitions [default: detectors, or the settings file's].",
    ),
]


topics_app = typer.Typer(help="Kafka topics described in topics/.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


def _settings(path: Path | None) -> Settings:
    try:
        return load_settings(path)
    except SettingsError as exc:
        errors.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


register_silences(app, _settings)
register_notify(app, _settings)
register_alerts(app, _settings)


def _topic_specs(settings: Settings) -> dict[str, TopicSpec]:
    try:
        return load_topics(Path(settings.topics))
    except (TopicError, OSError) as exc:
        errors.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _need_broker(settings: Settings) -> None:
    if not settings.kafka.bootstrap_servers:
        errors.print("[red]error:[/] no Kafka broker configured: set LUPUS_KAFKA_BOOTSTRAP_SERVERS")
        raise typer.Exit(2)


@app.command()
def run(
    inputs: Annotated[list[Path] | None, typer.Argument(help="JSON-lines files to read.")] = None,
    detectors: MonitorsOpt = None,
    data_dir: Annotated[
        Path, typer.Option(envvar="LUPUS_DATA_DIR", help="State and outputs (embedded).")
    ] = Path("lupus-data"),
    stdin: Annotated[bool, typer.Option("--stdin", help="Also read records from stdin.")] = False,
    http_port: Annotated[
        int | None, typer.Option(help="Serve POST /ingest on 127.0.0.1:PORT (0 = any port).")
    ] = None,
    wall_clock: Annotated[
        bool | None,
        typer.Option(
            "--wall-clock/--event-time",
            help="Drive absence checks by the wall clock (default when serving HTTP).",
        ),
    ] = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Run the monitor: on Kafka when a broker is configured, else embedded (no servers).

    With a broker (LUPUS_KAFKA_BOOTSTRAP_SERVERS or --settings), input files and stdin
    are published to the input topics and this process then serves as a worker; HTTP
    ingest and the choice of clock are the embedded runtime's (a worker runs on the wall
    clock, and products publish with `send` or the SDK).
    """
    from lupus_stream.detection.base import StateError
    from lupus_stream.runtimes.embedded import EmbeddedRuntime, Inputs
    from lupus_stream.runtimes.pipeline import DB_FILE, Pipeline

    settings = _settings(settings_file)
    detectors = Path(settings.detectors) if detectors is None else detectors
    files = inputs or []
    if settings.kafka.bootstrap_servers:
        from lupus_stream.contracts.topics import INPUT_TOPICS

        embedded_only = {"--http-port": http_port, "--wall-clock/--event-time": wall_clock}
        for option, value in embedded_only.items():
            if value is not None:
                errors.print(
                    f"[red]error:[/] {option} is for the embedded runtime; a Kafka broker is "
                    "configured (publish with `lupus-stream send` or the SDK)"
                )
                raise typer.Exit(2)
        catalog = _catalog(detectors)
        topics = {kind: settings.topic(name) for name, kind in INPUT_TOPICS.items()}
        sources: list[Path | None] = [*files, *([None] if stdin else [])]
        if sources:
            asyncio.run(_publish(settings, topics, sources))
        _serve(settings, catalog)
        return
    catalog = _catalog(detectors)
    for path in files:
        if not path.is_file():
            errors.print(f"[red]error:[/] input file {path} does not exist")
            raise typer.Exit(2)
    if not files and not stdin and http_port is None:
        errors.print("[red]error:[/] give input files, --stdin or --http-port")
        raise typer.Exit(2)
    try:
        pipeline = Pipeline(
            catalog,
            data_dir,
            data_dir,
            on_alert=lambda e: console.print(alert_line(e)),
            on_deadletter=lambda d: errors.print(deadletter_line(d)),
        )
        runtime = EmbeddedRuntime(
            pipeline,
            Inputs(files=files, stdin=stdin, http_port=http_port),
            wall_clock=http_port is not None if wall_clock is None else wall_clock,
            log=lambda m: errors.print(f"[dim]{m}[/]"),
        )
    except sqlite3.OperationalError as exc:  # not the content: permissions, a lock, a disk
        errors.print(f"[red]error:[/] cannot use the state in {data_dir}/{DB_FILE}: {exc}")
        raise typer.Exit(1) from None
    except (StateError, sqlite3.DatabaseError) as exc:
        errors.print(
            f"[red]error:[/] the state in {data_dir}/{DB_FILE} cannot be restored ({exc}); "
            "move it aside to start afresh"
        )
        raise typer.Exit(1) from None
    for note in pipeline.restore_notes:
        errors.print(f"[yellow]state:[/] {note}")
    asyncio.run(runtime.run())
    c = pipeline.counts
    errors.print(
        f"processed {c.records:,} records: {c.anomalies:,} anomalous verdicts, "
        f"{c.firing} alerts fired, {c.resolved} resolved, {c.deadlettered} dead-lettered; "
        f"state in {data_dir}/"
    )


@app.command()
def demo(
    detectors: DetectorsOpt = Path("detectors"),
    out: Annotated[
        Path | None, typer.Option(help="Write anomalies.jsonl, alerts.jsonl here.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the generated traffic.")] = 7,
) -> None:
    """Replay eight weeks of generated traffic with injected incidents, showing alerts."""
    from lupus_stream.cli.demo import run_demo

    _catalog(detectors)
    if not run_demo(detectors, out, seed):
        raise typer.Exit(1)


@app.command()
def backtest(
    inputs: Annotated[list[Path], typer.Argument(help="CSV files with timestamp,value.")],
    output: Annotated[Path | None, typer.Option(help="Output CSV (one input).")] = None,
    output_dir: Annotated[
        Path | None, typer.Option(help="Output directory (keeps each input's name).")
    ] = None,
    detector: Annotated[
        str | None, typer.Option(help="Detector kind; default: what a metric monitor gets.")
    ] = None,
    settings: Annotated[
        list[str] | None, typer.Option("--set", help="Detector parameter, key=value.")
    ] = None,
) -> None:
    """Score historical series with one detector, as the monitor would have live."""
    import yaml

    from lupus_stream.backtest import backtest as run_backtest
    from lupus_stream.backtest import write_scores
    from lupus_stream.detection.registry import DetectorConfigError

    if (output is None) == (output_dir is None):
        errors.print("[red]error:[/] give exactly one of --output and --output-dir")
        raise typer.Exit(2)
    if output is not None and len(inputs) != 1:
        errors.print("[red]error:[/] --output takes one input; use --output-dir for several")
        raise typer.Exit(2)
    params: dict[str, object] = {}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            errors.print(f"[red]error:[/] --set {item!r}: expected key=value")
            raise typer.Exit(2)
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or exc
            errors.print(f"[red]error:[/] --set {item!r}: not a YAML value: {problem}")
            raise typer.Exit(2) from None
    failed = False
    for path in inputs:
        target = output if output is not None else Path(str(output_dir)) / path.name
        try:
            result = run_backtest(path, detector, params)
        except DetectorConfigError as exc:
            errors.print(f"[red]invalid detector settings:[/] {exc}")
            raise typer.Exit(2) from exc
        except (OSError, ValueError) as exc:
            errors.print(f"[red]error:[/] {exc}")
            failed = True
            continue
        write_scores(result, target)
        for message in result.errors:
            errors.print(f"[yellow]skipped:[/] {message}")
        console.print(f"{path}: {len(result.rows)} rows, {result.anomalies} anomalous -> {target}")
    if failed:
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(settings_file: SettingsOpt = None) -> None:
    """Create the topics of topics/ that do not exist yet (safe to repeat)."""
    from lupus_stream.runtimes.kafka.admin import create_topics

    settings = _settings(settings_file)
    _need_broker(settings)
    result = asyncio.run(create_topics(settings, _topic_specs(settings)))
    for name, status in result.items():
        console.print(f"{name}: {status}")


@app.command()
def worker(settings_file: SettingsOpt = None) -> None:
    """Run a Kafka/Faust worker (detect and alert stages) until SIGTERM."""
    settings = _settings(settings_file)
    _need_broker(settings)
    _serve(settings, _catalog(Path(settings.detectors)))


def _serve(settings: Settings, catalog: Catalog) -> None:
    from lupus_stream.runtimes.kafka.worker import serve

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    ok = asyncio.run(
        serve(settings, catalog, _topic_specs(settings), log=lambda m: errors.print(f"[dim]{m}[/]"))
    )
    if not ok:
        raise typer.Exit(1)


@app.command()
def send(
    topic: Annotated[str, typer.Argument(help="Input topic, e.g. lupus.metrics.")],
    source: Annotated[
        Path | None, typer.Argument(help="JSON-lines file; stdin if omitted.")
    ] = None,
    settings_file: SettingsOpt = None,
) -> None:
    """Publish JSON-lines records to an input topic, keyed by signal."""
    from lupus_stream.contracts.topics import INPUT_TOPICS

    settings = _settings(settings_file)
    _need_broker(settings)
    base = topic.removeprefix(settings.kafka.topic_prefix)
    if base not in INPUT_TOPICS:
        errors.print(f"[red]error:[/] {topic} is not an input topic: {sorted(INPUT_TOPICS)}")
        raise typer.Exit(2)
    asyncio.run(_publish(settings, {INPUT_TOPICS[base]: settings.topic(base)}, [source]))


async def _publish(settings: Settings, topics: dict[str, str], sources: list[Path | None]) -> None:
    """Send JSON-lines files (None: stdin) with a progress bar; bad records dead-lettered."""
    import sys

    from aiokafka import AIOKafkaProducer
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from lupus_stream.contracts.topics import DEADLETTER_TOPIC
    from lupus_stream.runtimes.kafka.admin import client_options
    from lupus_stream.runtimes.kafka.send import send_lines

    producer = AIOKafkaProducer(**client_options(settings), acks="all", linger_ms=5)
    await producer.start()
    try:
        for source in sources:
            size = source.stat().st_size if source is not None else None
            handle = source.open("rb") if source is not None else sys.stdin.buffer
            name = str(source) if source is not None else "stdin"
            with (
                handle,
                Progress(
                    TextColumn(f"[bold blue]{name}"), BarColumn(), DownloadColumn(), console=errors
                ) as progress,
            ):
                task = progress.add_task("send", total=size)
                counts = await send_lines(
                    producer,
                    topics,
                    settings.topic(DEADLETTER_TOPIC),
                    handle,
                    source=name,
                    on_line=lambda n, task=task: progress.advance(task, n),  # type: ignore[misc]
                )
            for reason in counts.rejected or []:
                errors.print(f"[yellow]dead-lettered:[/] {name} {reason}")
            console.print(f"{name}: sent {counts.records} records in {counts.messages} messages")
    finally:
        await producer.stop()


@app.command()
def check(detectors: MonitorsOpt = None, settings_file: SettingsOpt = None) -> None:
    """Validate the monitor definitions and list them."""
    if detectors is None:
        detectors = Path(_settings(settings_file).detectors)
    catalog = _catalog(detectors)
    for product in catalog.products.values():
        console.print(
            f"[bold]{product.product}[/] (owner {product.owner}, receiver {product.receiver})"
        )
        for m in product.monitors:
            console.print(
                f"  {m.name}: {m.signal.input_kind} signal, detector {m.detector_kind}, "
                f"severity {m.alert.severity}"
            )


def _catalog(detectors: Path) -> Catalog:
    try:
        return load_catalog(detectors)
    except MonitorError as exc:
        errors.print(f"[red]invalid monitor definition:[/] {exc}")
        raise typer.Exit(2) from exc


if __name__ == "__main__":
    app()
