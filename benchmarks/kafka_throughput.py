"""Throughput of the Kafka runtime against a bare consumer that only decodes, in one run.

    scripts/test-services .venv/bin/python benchmarks/kafka_throughput.py [--records N] ...

Needs a broker and a Redis: `LUPUS_TEST_KAFKA` and `LUPUS_TEST_REDIS_URL`, which
`scripts/test-services` starts and exports (set them yourself to reuse running services).

What it does, in an isolated namespace (own topic prefix, consumer groups, Redis prefix,
removed at the end):

1. writes a catalog to a temp dir: a few products, each with metric monitors using the
   default detector (or `--detector KIND`), and generates hourly points for many labelled series
   (daily cycle, noise, a few spikes);
2. produces them into the metrics topic as batched messages of `--batch` records of one
   signal key each (as `lupus-stream send` does), all before any consumer starts;
3. bare: an aiokafka consumer (its own group, default settings) reads the topic and runs
   `decode_message` on every message, nothing else; `--bare-passes` times (a fresh group
   each), half of them before the pipeline and half after it, so that the machine
   speeding up or slowing down during the run moves both sides; the median is used;
4. Faust, decode only: `faust_decode_only.py`, a Faust worker process with one agent
   that runs `decode_message` on each message and nothing else (the worker's consumer
   settings, its own group), reads them once, after the first bare passes: the most a
   pipeline of Faust agents can reach, whatever it does after decoding;
5. pipeline: a real `lupus-stream worker` process (decode -> engine -> anomalies topic ->
   alert stage with Redis -> alerts topic) consumes the same messages.

Measurement (the same window for both): from the first record consumed to the moment
every record was processed.

* bare: the first non-empty fetch to the last message decoded;
* Faust, decode only: its first message to its last decoded (timed in that process);
* pipeline: the first scrape of the worker's Prometheus metrics showing
  `lupus_records_in_total` > 0 on the input topic, to the first scrape where the detect
  stage finished every message (`lupus_processing_seconds_count{stage="detect"}`) *and*
  the alert stage finished every anomaly verdict the engine must emit
  (`lupus_records_in_total` on the anomalies topic, counted once a batch has committed;
  the expected count is computed beforehand by running the engine in this process on the
  same records).
  Scrapes run every 20 ms near either end of the window (100 ms in between, a scrape
  costs the worker about 1 ms of CPU), so either end is late by at most 20 ms. Worker
  start-up (imports, group join, partition assignment) is outside the window and is
  reported on its own.

The time until the worker has *committed* every input offset is printed too, but not used
for the ratio: the detect stage acknowledges messages only when a snapshot covers them
(every `snapshot_every` messages or `snapshot_interval` seconds per partition) and Faust
commits every few seconds, so on a short run that figure is mostly those intervals.

Worker settings are the production defaults except the isolation ones; any `LUPUS_WORKER_*`
variable in the environment (e.g. `LUPUS_WORKER_SNAPSHOT_EVERY`) reaches the worker.

`--profile FILE` runs the runtime inside this process under cProfile instead of the
subprocess (same measurement, counters read from the registry), writes the pstats to FILE
and prints the top functions. The profiler slows Python down: its rates are not comparable.

The last line printed is `ratio=R`: pipeline records/s divided by bare records/s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import math
import os
import pstats
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from lupus_stream.contracts import MetricPoint, decode_message, encode_records
from lupus_stream.contracts.records import InputRecord
from lupus_stream.contracts.topics import ANOMALIES_TOPIC, METRICS_TOPIC, load_topics
from lupus_stream.engine import Engine
from lupus_stream.monitors.loader import load_catalog
from lupus_stream.runtimes.kafka.admin import create_topics
from lupus_stream.runtimes.kafka.send import group_by_key
from lupus_stream.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
HINT = (
    "needs a Kafka broker and a Redis: run it under scripts/test-services, e.g.\n"
    "  scripts/test-services .venv/bin/python benchmarks/kafka_throughput.py"
)
PRODUCTS = ("shop", "ads", "search", "feed")
METRICS = ("orders", "revenue", "latency_ms", "errors", "sessions")
# Seconds between two looks at the worker's counters: short around the two ends of the
# window, longer in between (a scrape costs the worker about 1 ms of CPU).
POLL_EDGE, POLL_MIDDLE = 0.02, 0.1
TIMEOUT = 600.0  # seconds a stage may take before the benchmark gives up


# -- data -------------------------------------------------------------------------------


def write_catalog(directory: Path, detector: str | None = None) -> None:
    """One file per product; every metric gets a monitor with `detector` (None: the
    default one; `threshold` with a bound no point reaches)."""
    directory.mkdir(parents=True, exist_ok=True)
    for product in PRODUCTS:
        lines = [
            f"product: {product}",
            f"owner: team-{product}",
            f"receiver: {product}-oncall",
            "monitors:",
        ]
        for name in METRICS:
            lines += [
                f"  - name: {name}",
                f"    signal: {{kind: metric, name: {name}}}",
                "    alert: {severity: ticket}",
            ]
            if detector is not None:  # at its defaults (a threshold needs a bound)
                extra = ", upper: 1.0e+12" if detector == "threshold" else ""
                lines.append(f"    detector: {{kind: {detector}{extra}}}")
        (directory / f"{product}.yaml").write_text("\n".join(lines) + "\n")


def generate(
    n_records: int, n_series: int, rng: random.Random, spike_rate: float
) -> tuple[list[InputRecord], int, int]:
    """Hourly points of every series, in time order: (records, series count, points each)."""
    signals = [(p, m) for p in PRODUCTS for m in METRICS]
    per_signal = max(1, n_series // len(signals))
    series = [(p, m, f"r{i:02d}") for p, m in signals for i in range(per_signal)]
    points = max(1, n_records // len(series))
    # the last point an hour ago: a worker refuses events more than a day ahead of its clock
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    start = now - timedelta(hours=points)
    shape = {
        s: (
            math.exp(rng.uniform(math.log(50), math.log(50_000))),  # level
            rng.uniform(0.1, 0.4),  # daily amplitude (share of the level)
            rng.uniform(0.01, 0.05),  # noise (share of the level)
            rng.uniform(0, 24),  # phase (hours)
        )
        for s in series
    }
    records: list[InputRecord] = []
    for t in range(points):
        ts = start + timedelta(hours=t)
        for s in series:
            level, amplitude, noise, phase = shape[s]
            x = level * (1 + amplitude * math.sin(2 * math.pi * (t + phase) / 24))
            x *= 1 + rng.gauss(0, noise)
            if rng.random() < spike_rate:
                x *= rng.choice((0.2, 3.0, 4.0))
            product, name, region = s
            records.append(
                MetricPoint(
                    product=product,
                    name=name,
                    ts=ts,
                    value=round(x, 3),
                    labels={"region": region},
                )
            )
    return records, len(series), points


def batch_messages(records: list[InputRecord], batch: int) -> list[tuple[bytes, bytes, int]]:
    """(key, value, record count): per key in time order, keys interleaved round-robin."""
    per_key = [
        [(key.encode(), group[i : i + batch]) for i in range(0, len(group), batch)]
        for key, group in group_by_key(records).items()
    ]
    out = []
    for round_ in range(max(len(chunks) for chunks in per_key)):
        for chunks in per_key:
            if round_ < len(chunks):
                key, chunk = chunks[round_]
                out.append((key, encode_records(chunk), len(chunk)))
    return out


def expected_verdicts(catalog: Any, records: list[InputRecord]) -> tuple[int, int]:
    """(verdicts, anomalous ones) the engine emits for these records (series are
    independent, so one engine over all of them gives what the partitions' engines give)."""
    engine = Engine(catalog)
    verdicts = anomalous = 0
    for record in records:
        for anomaly in engine.process(record).anomalies:
            verdicts += 1
            anomalous += anomaly.state == "anomalous"
    return verdicts, anomalous


# -- namespace ---------------------------------------------------------------------------


@dataclass
class Namespace:
    kafka: str
    redis_url: str
    workdir: Path
    partitions: int
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def prefix(self) -> str:
        return f"bench{self.tag}."

    @property
    def app_id(self) -> str:
        return f"lupus-bench-{self.tag}"

    @property
    def redis_prefix(self) -> str:
        return f"lupus-bench-{self.tag}:"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            LUPUS_KAFKA_BOOTSTRAP_SERVERS=self.kafka,
            LUPUS_KAFKA_TOPIC_PREFIX=self.prefix,
            LUPUS_KAFKA_REPLICATION_FACTOR="1",
            LUPUS_KAFKA_PARTITIONS=str(self.partitions),
            LUPUS_REDIS_URL=self.redis_url,
            LUPUS_REDIS_KEY_PREFIX=self.redis_prefix,
            LUPUS_WORKER_APP_ID=self.app_id,
            LUPUS_WORKER_DATA_DIR=str(self.workdir / "worker-data"),
            LUPUS_WORKER_METRICS_PORT="0",
            LUPUS_DETECTORS=str(self.workdir / "detectors"),
            LUPUS_TOPICS=str(ROOT / "topics"),
        )
        return env

    def settings(self) -> Settings:
        return load_settings(env=self.env())


async def produce(
    ns: Namespace, topic: str, messages: list[tuple[bytes, bytes, int]]
) -> dict[TopicPartition, int]:
    """Send every message (acks=all); returns the end offset of each partition."""
    producer = AIOKafkaProducer(
        bootstrap_servers=ns.kafka, acks="all", linger_ms=10, max_batch_size=1_048_576
    )
    await producer.start()
    ends = {TopicPartition(topic, p): 0 for p in range(ns.partitions)}
    try:
        futures = [await producer.send(topic, value, key=key) for key, value, _ in messages]
        for future in futures:
            meta = await future
            tp = TopicPartition(topic, meta.partition)
            ends[tp] = max(ends[tp], meta.offset + 1)
    finally:
        await producer.stop()
    return ends


async def cleanup(ns: Namespace) -> None:
    """Remove the namespace's topics (ours and Faust's) and Redis keys."""
    import redis.asyncio as aioredis

    admin = AIOKafkaAdminClient(bootstrap_servers=ns.kafka)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith((ns.prefix, ns.app_id))]
        if ours:
            await admin.delete_topics(ours)
    finally:
        await admin.close()
    client = aioredis.from_url(ns.redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{ns.redis_prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


# -- bare consumer -----------------------------------------------------------------------


async def bare(
    ns: Namespace,
    topic: str,
    messages: int,
    products: set[str],
    max_records: int,
    group: str,
) -> tuple[int, float]:
    """Decode every message of the topic; (records, seconds from first fetch to last)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=ns.kafka,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        seen = records = errors = 0
        started: float | None = None
        deadline = time.monotonic() + TIMEOUT
        while seen < messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer: {seen} of {messages} messages")
            batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
            if batch and started is None:
                started = time.perf_counter()
            for tp_messages in batch.values():
                for message in tp_messages:
                    decoded = decode_message(
                        message.value, accept=("metric",), known_products=products
                    )
                    records += len(decoded.records)
                    errors += len(decoded.errors)
                    seen += 1
        assert started is not None
        elapsed = time.perf_counter() - started
    finally:
        await consumer.stop()
    if errors:
        raise RuntimeError(f"bare consumer: {errors} decode errors")
    return records, elapsed


def faust_decode_only(ns: Namespace, topic: str, messages: int) -> tuple[int, float]:
    """benchmarks/faust_decode_only.py in a process of its own, as the worker runs:
    (records, seconds from its first message to its last)."""
    script = Path(__file__).with_name("faust_decode_only.py")
    done = subprocess.run(
        [sys.executable, str(script), topic, str(messages), f"{ns.app_id}-faust"],
        env=ns.env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"faust_decode_only.py exited {done.returncode}:\n{done.stderr}")
    records, seconds = done.stdout.split()[-2:]
    return int(records), float(seconds)


# -- pipeline ----------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def parse_metrics(text: str) -> dict[tuple[str, str], float]:
    """Prometheus exposition -> {(name, 'k="v",...'): value}."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is not None:
            out[(match["name"], match["labels"] or "")] = float(match["value"])
    return out


@dataclass
class Progress:
    consumed: float  # input messages handed to the detect agent
    detected: float  # input messages the detect stage finished
    alerted: float  # anomaly verdicts the alert stage finished
    deadlettered: float
    detect_seconds: float = 0.0  # summed handling time of the detect stage's messages
    alert_seconds: float = 0.0  # same for the alert stage (Redis and Kafka waits included)


def progress_from(
    samples: dict[tuple[str, str], float], input_topic: str, anomaly_topic: str
) -> Progress:
    def get(name: str, labels: str = "") -> float:
        return samples.get((name, labels), 0.0)

    return Progress(
        consumed=get("lupus_records_in_total", f'topic="{input_topic}"'),
        detected=get("lupus_processing_seconds_count", 'stage="detect"'),
        alerted=get("lupus_records_in_total", f'topic="{anomaly_topic}"'),
        deadlettered=get("lupus_deadlettered_total"),
        detect_seconds=get("lupus_processing_seconds_sum", 'stage="detect"'),
        alert_seconds=get("lupus_processing_seconds_sum", 'stage="alert"'),
    )


@dataclass
class PipelineTimes:
    startup: float  # worker launch -> first record consumed
    processing: float  # first record consumed -> every record and verdict processed
    committed: float | None  # first record consumed -> every input offset committed
    cpu: float | None = None  # CPU seconds the worker used in the processing window
    final: Progress | None = None  # the counters once everything was processed


async def watch(
    read: Callable[[], Awaitable[Progress]],
    launched: float,
    messages: int,
    verdicts: int,
    committed: Callable[[], Awaitable[bool]],
    alive: Callable[[], None],
    window: tuple[Callable[[], object], Callable[[], object]] | None = None,
) -> PipelineTimes:
    """Poll the counters until everything is processed, then the commits; `window` is
    called (start, end) at the first record and once everything is processed."""
    first: float | None = None
    deadline = time.monotonic() + TIMEOUT
    while True:
        alive()
        progress = await read()
        now = time.perf_counter()
        if first is None and progress.consumed > 0:
            first = now
            if window is not None:
                window[0]()
        if progress.deadlettered:
            raise RuntimeError(f"{progress.deadlettered:.0f} dead letters: see the worker log")
        if progress.detected >= messages and progress.alerted >= verdicts:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"pipeline stuck at {progress}")
        near_end = progress.detected >= 0.9 * messages
        await asyncio.sleep(POLL_EDGE if first is None or near_end else POLL_MIDDLE)
    assert first is not None
    done = now
    if window is not None:
        window[1]()
    commit_time: float | None = None
    commit_deadline = time.monotonic() + 120
    while time.monotonic() < commit_deadline:
        alive()
        if await committed():
            commit_time = time.perf_counter() - first
            break
        await asyncio.sleep(0.1)
    return PipelineTimes(first - launched, done - first, commit_time, final=progress)


def commit_check(
    admin: AIOKafkaAdminClient, group: str, ends: dict[TopicPartition, int]
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        offsets = await admin.list_consumer_group_offsets(group, partitions=list(ends))
        return all(
            tp in offsets and offsets[tp].offset >= end for tp, end in ends.items() if end > 0
        )

    return check


async def pipeline_subprocess(
    ns: Namespace,
    input_topic: str,
    anomaly_topic: str,
    messages: int,
    verdicts: int,
    ends: dict[TopicPartition, int],
) -> PipelineTimes:
    log_path = ns.workdir / "worker.log"
    with log_path.open("w") as log:
        launched = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "lupus_stream.cli.main", "worker"],
            env=ns.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def alive() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited {proc.returncode}:\n{log_path.read_text()}")

        admin = AIOKafkaAdminClient(bootstrap_servers=ns.kafka)
        await admin.start()
        try:
            url = await metrics_url(log_path, alive)

            async def read() -> Progress:
                text = await asyncio.to_thread(scrape, url)
                return progress_from(parse_metrics(text), input_topic, anomaly_topic)

            cpu: list[tuple[float, float]] = []

            def mark() -> None:
                cpu.append((time.perf_counter(), process_cpu(proc.pid)))  # at both ends

            times = await watch(
                read,
                launched,
                messages,
                verdicts,
                commit_check(admin, ns.app_id, ends),
                alive,
                (mark, mark),
            )
            if cpu[0][1] >= 0:
                times.cpu = cpu[1][1] - cpu[0][1]
            return times
        except BaseException:
            print(log_path.read_text(), file=sys.stderr)
            raise
        finally:
            await admin.close()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc; -1 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return -1.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def metrics_url(log_path: Path, alive: Callable[[], None]) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive()
        for line in log_path.read_text().splitlines():
            if line.startswith("metrics: "):
                return line.split(" ", 1)[1].strip()
        await asyncio.sleep(POLL_EDGE)
    raise TimeoutError(f"no metrics line in {log_path}")


async def pipeline_inprocess(
    ns: Namespace,
    input_topic: str,
    anomaly_topic: str,
    messages: int,
    verdicts: int,
    ends: dict[TopicPartition, int],
    profile_path: Path | None,
) -> PipelineTimes:
    """The runtime in this process; with a path, profiled from the first record to the
    last verdict (cProfile)."""
    from lupus_stream.runtimes.kafka import metrics
    from lupus_stream.runtimes.kafka.app import KafkaRuntime

    settings = ns.settings()
    catalog = load_catalog(settings.detectors)
    runtime = KafkaRuntime(settings, catalog, load_topics(Path(settings.topics)))
    registry = metrics.REGISTRY

    async def read() -> Progress:
        samples = {
            (sample.name, ",".join(f'{k}="{v}"' for k, v in sample.labels.items())): sample.value
            for family in registry.collect()
            for sample in family.samples
        }
        return progress_from(samples, input_topic, anomaly_topic)

    def alive() -> None:
        if runtime.app.crashed:
            raise RuntimeError(f"runtime crashed: {runtime.app.crash_reason!r}")

    profiler = cProfile.Profile()
    admin = AIOKafkaAdminClient(bootstrap_servers=ns.kafka)
    await admin.start()
    cpu: list[float] = []

    def start() -> None:
        cpu.append(time.process_time())
        if profile_path is not None:
            profiler.enable()

    def end() -> None:
        profiler.disable()
        cpu.append(time.process_time())

    launched = time.perf_counter()
    try:
        await runtime.start()
        times = await watch(
            read,
            launched,
            messages,
            verdicts,
            commit_check(admin, ns.app_id, ends),
            alive,
            (start, end),
        )
        times.cpu = cpu[1] - cpu[0]  # this whole process, benchmark polling included
        return times
    finally:
        profiler.disable()
        await runtime.stop()
        await admin.close()
        if profile_path is not None:
            profiler.dump_stats(str(profile_path))


def print_profile(path: Path, top: int) -> None:
    for key in ("tottime", "cumulative"):
        print(f"\n--- profile: top {top} by {key} ({path})")
        pstats.Stats(str(path)).sort_stats(key).print_stats(top)


# -- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300_000, help="records (metric points)")
    parser.add_argument("--batch", type=int, default=250, help="records per message")
    parser.add_argument("--series", type=int, default=200, help="series (multiple of 20)")
    parser.add_argument("--partitions", type=int, default=4, help="input topic partitions")
    parser.add_argument(
        "--spike-rate", type=float, default=0.0005, help="share of points made outliers"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--detector", help="detector kind of every monitor (default: what a monitor gets)"
    )
    parser.add_argument(
        "--bare-passes",
        type=int,
        default=4,
        help="bare consumer passes, half before and half after the pipeline (median is used)",
    )
    parser.add_argument(
        "--profile", type=Path, help="run the runtime in-process under cProfile, stats here"
    )
    parser.add_argument("--profile-top", type=int, default=40)
    parser.add_argument(
        "--in-process", action="store_true", help="run the runtime in this process (no profiler)"
    )
    parser.add_argument("--keep", action="store_true", help="keep topics, Redis keys, tmp dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # in order with the libraries' stderr
    kafka, redis_url = os.environ.get("LUPUS_TEST_KAFKA"), os.environ.get("LUPUS_TEST_REDIS_URL")
    if not kafka or not redis_url:
        print(f"LUPUS_TEST_KAFKA / LUPUS_TEST_REDIS_URL not set: {HINT}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="lupus-bench-"))
    try:
        return asyncio.run(run(args, Namespace(kafka, redis_url, workdir, args.partitions)))
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def run(args: argparse.Namespace, ns: Namespace) -> int:
    write_catalog(ns.workdir / "detectors", args.detector)
    settings = ns.settings()
    catalog = load_catalog(settings.detectors)
    products = set(catalog.products)
    records, n_series, points = generate(
        args.records, args.series, random.Random(args.seed), args.spike_rate
    )
    messages = batch_messages(records, args.batch)
    verdicts, anomalous = expected_verdicts(catalog, records)
    topic = settings.topic(METRICS_TOPIC)
    anomaly_topic = settings.topic(ANOMALIES_TOPIC)
    print(
        f"setup: {len(records)} records, {len(messages)} messages, batch {args.batch} "
        f"records/message, {n_series} series ({len(PRODUCTS)} products x {len(METRICS)} "
        f"metrics x {n_series // (len(PRODUCTS) * len(METRICS))} regions, {points} hourly "
        f"points each), {ns.partitions} partitions, {sum(len(v) for _, v, _ in messages) / 1e6:.1f}"
        f" MB; expected {verdicts} anomaly verdicts ({anomalous} anomalous)"
    )
    print(f"namespace: topics {ns.prefix}*, group {ns.app_id}, redis {ns.redis_prefix}*")
    try:
        await create_topics(settings, load_topics(Path(settings.topics)))
        started = time.perf_counter()
        ends = await produce(ns, topic, messages)
        print(f"produced in {time.perf_counter() - started:.1f}s")
        assert sum(ends.values()) == len(messages), (ends, len(messages))
        spread = ", ".join(str(ends[tp]) for tp in sorted(ends, key=lambda tp: tp.partition))
        print(f"messages per partition: {spread}")

        async def bare_pass() -> float:
            n, seconds = await bare(
                ns,
                topic,
                len(messages),
                products,
                settings.worker.max_poll_records,
                f"{ns.app_id}-bare{len(passes)}",
            )
            assert n == len(records), (n, len(records))
            return seconds

        passes: list[float] = []
        before = (args.bare_passes + 1) // 2  # the rest after the pipeline: drift averages out
        for _ in range(before):
            passes.append(await bare_pass())

        faust_n, faust_s = await asyncio.to_thread(faust_decode_only, ns, topic, len(messages))
        assert faust_n == len(records), (faust_n, len(records))

        if args.profile is not None or args.in_process:
            times = await pipeline_inprocess(
                ns, topic, anomaly_topic, len(messages), verdicts, ends, args.profile
            )
            mode = "pipeline, in-process" + (" under cProfile" if args.profile else "")
        else:
            times = await pipeline_subprocess(
                ns, topic, anomaly_topic, len(messages), verdicts, ends
            )
            mode = "pipeline (lupus-stream worker: decode, engine, anomalies, alert stage, Redis)"
        for _ in range(args.bare_passes - before):
            passes.append(await bare_pass())
        bare_s = statistics.median(passes)
        bare_rate = len(records) / bare_s
        print(
            f"bare consumer (aiokafka + decode_message): {len(records)} records in "
            f"{bare_s:.2f}s (median of {len(passes)} passes, {before} before the pipeline and "
            f"{len(passes) - before} after: {', '.join(f'{p:.2f}' for p in passes)}s)"
        )
        pipe_rate = len(records) / times.processing
        print(
            f"{mode}: {len(records)} records and {verdicts} verdicts in {times.processing:.2f}s "
            f"(worker start-up before the first record: {times.startup:.2f}s)"
        )
        final = times.final
        if final is not None and final.detected and final.alerted:
            print(
                f"  stage time: detect {final.detect_seconds:.2f}s "
                f"({final.detect_seconds / final.detected * 1e3:.2f} ms/message, "
                f"{final.detect_seconds / len(records) * 1e6:.1f} us/record), alert "
                f"{final.alert_seconds:.2f}s ({final.alert_seconds / final.alerted * 1e3:.2f} "
                "ms/verdict, waits included)"
            )
        if times.cpu is not None:
            print(
                f"  worker CPU in that window: {times.cpu:.2f}s "
                f"({times.cpu / times.processing:.0%} of one core; the rest is waiting)"
            )
        if times.committed is None:
            print("  input offsets not all committed within 120 s after processing")
        else:
            print(
                f"  all input offsets committed {times.committed:.2f}s after the first record "
                f"({len(records) / times.committed:,.0f} records/s; includes the snapshot and "
                "commit intervals)"
            )
        if args.profile is not None:
            print_profile(args.profile, args.profile_top)
        faust_rate = len(records) / faust_s
        print(
            f"faust, decode only (benchmarks/faust_decode_only.py, one pass before the "
            f"pipeline): {faust_rate:,.0f} records/s, {faust_rate / bare_rate:.3f} of the bare "
            "consumer: what a pipeline of Faust agents reaches that detects nothing"
        )
        print(f"bare:     {bare_rate:12,.0f} records/s")
        print(f"pipeline: {pipe_rate:12,.0f} records/s")
        print(f"ratio={pipe_rate / bare_rate:.3f}")
        return 0
    finally:
        if not args.keep:
            with contextlib.suppress(Exception):
                await cleanup(ns)


if __name__ == "__main__":
    sys.exit(main())
