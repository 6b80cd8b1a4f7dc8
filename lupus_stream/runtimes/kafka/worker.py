"""Run one worker in this process until SIGTERM or SIGINT, then stop gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from lupus_stream.contracts.topics import TopicSpec
from lupus_stream.detection import seasonal_steady
from lupus_stream.monitors import Catalog
from lupus_stream.runtimes.kafka import metrics
from lupus_stream.runtimes.kafka.app import KafkaRuntime
from lupus_stream.settings import Settings


async def serve(
    settings: Settings,
    catalog: Catalog,
    topics: dict[str, TopicSpec],
    log: Callable[[str], None] = print,
) -> bool:
    """Returns False when the worker crashed (the caller exits non-zero)."""
    worker = settings.worker
    if worker.metrics_port is not None:
        port = metrics.serve(worker.metrics_host, worker.metrics_port)
        log(f"metrics: http://{worker.metrics_host}:{port}/metrics")
    seasonal_steady.warm()  # compile before the first message rather than on it
    runtime = KafkaRuntime(settings, catalog, topics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    log(f"worker {worker.app_id} started against {settings.kafka.bootstrap_servers}")
    try:
        while not stop.is_set() and not runtime.app.crashed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
        if runtime.app.crashed:
            log(f"worker crashed: {runtime.app.crash_reason!r}")
    finally:
        log("stopping: snapshotting owned partitions")
        await runtime.stop()
        log("stopped")
    return not runtime.app.crashed
