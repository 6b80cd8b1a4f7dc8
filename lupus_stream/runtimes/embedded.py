"""The embedded runtime: one process, no servers.

Records come in from JSON-lines files, stdin and an HTTP endpoint on localhost; state
lives in SQLite under the data directory; anomalies and alert events go to JSON-lines
files and to the console. File offsets are checkpointed with the engine state, so a
restart resumes where it stopped and does not alert twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from lupus_stream.runtimes.pipeline import Pipeline

YIELD_EVERY = 500


@dataclass
class Inputs:
    files: list[Path] = field(default_factory=list)
    stdin: bool = False
    http_port: int | None = None
    http_host: str = "127.0.0.1"


class EmbeddedRuntime:
    """Runs a pipeline over the configured inputs until they end or a signal arrives."""

    def __init__(
        self,
        pipeline: Pipeline,
        inputs: Inputs,
        wall_clock: bool,
        checkpoint_every: float = 10.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.pipeline = pipeline
        self.inputs = inputs
        self.wall_clock = wall_clock
        self.checkpoint_every = checkpoint_every
        self.log = log
        self.offsets: dict[str, int] = pipeline.offsets()
        self.stop = asyncio.Event()
        self.http_url: str | None = None

    def _now(self) -> float | None:
        """The clock records are checked against: wall time, or none on a replay."""
        return time.time() if self.wall_clock else None

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop.set)
        runner = await self._start_http() if self.inputs.http_port is not None else None
        background = asyncio.create_task(self._housekeeping())
        try:
            readers = [self._read_file(path) for path in self.inputs.files]
            if self.inputs.stdin:
                readers.append(self._read_stdin())
            finite: asyncio.Future[list[None]] = asyncio.gather(*readers)
            stopped: asyncio.Task[bool] = asyncio.create_task(self.stop.wait())
            waiting: set[asyncio.Future[Any]] = {finite, stopped}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if finite.done():
                finite.result()
            if runner is not None and not self.stop.is_set():
                await stopped  # keep serving HTTP until Ctrl-C / SIGTERM
            else:
                finite.cancel()
                stopped.cancel()
        finally:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await background
            if runner is not None:
                await runner.cleanup()
            if self.wall_clock:
                self.pipeline.tick(time.time())
            self.pipeline.close(self.offsets)

    async def _read_file(self, path: Path) -> None:
        # the file, not only its path: one put in its place (a new inode) is a new file
        info = path.stat()
        where = f"{path.resolve()}@"
        name = f"{where}{info.st_dev}:{info.st_ino}"
        start = self.offsets.get(name, 0)
        if not start and any(key.startswith(where) for key in self.offsets):
            self.log(f"{path}: another file than the one read before: read from the start")
        if start > info.st_size:  # truncated since: its lines are new ones
            self.log(f"{path}: shorter than where it was left (byte {start}): read from the start")
            start = 0
        if start:
            self.log(f"{path}: resuming at byte {start}")
        with path.open("rb") as handle:
            handle.seek(start)
            offset = start
            for count, line in enumerate(handle, start=1):
                if self.stop.is_set():
                    return
                if line.strip():
                    self.pipeline.ingest(line.rstrip(b"\r\n"), f"{path}@byte {offset}", self._now())
                offset += len(line)
                self.offsets[name] = offset
                if count % YIELD_EVERY == 0:
                    await asyncio.sleep(0)

    async def _read_stdin(self) -> None:
        loop = asyncio.get_running_loop()
        line_no = 0
        while not self.stop.is_set():
            line = await loop.run_in_executor(None, sys.stdin.buffer.readline)
            if not line:
                return
            line_no += 1
            if line.strip():
                self.pipeline.ingest(line.rstrip(b"\r\n"), f"stdin:{line_no}", self._now())

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self.checkpoint_every)
            if self.wall_clock:
                self.pipeline.tick(time.time())
            self.pipeline.checkpoint(self.offsets)

    async def _start_http(self) -> web.AppRunner:
        app = web.Application(client_max_size=2 * 1024 * 1024)
        app.router.add_post("/ingest", self._ingest)
        app.router.add_get("/healthz", self._health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.inputs.http_host, self.inputs.http_port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else self.inputs.http_port
        self.http_url = f"http://{self.inputs.http_host}:{port}"
        self.log(f"ingest endpoint: POST {self.http_url}/ingest")
        return runner

    async def _ingest(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not body.strip():  # nothing to process, nor to keep
            return web.json_response({"error": "empty body"}, status=400)
        lines = body.splitlines() if request.content_type == "application/x-ndjson" else [body]
        total = {"records": 0, "deadlettered": 0, "anomalies": 0, "firing": 0}
        for i, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            counts = self.pipeline.ingest(line, f"http:{request.remote}:{i}", self._now())
            total["records"] += counts.records
            total["deadlettered"] += counts.deadlettered
            total["anomalies"] += counts.anomalies
            total["firing"] += counts.firing
        status = 200 if total["deadlettered"] == 0 else 422 if total["records"] == 0 else 207
        return web.json_response(total, status=status)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", **asdict(self.pipeline.counts)})
