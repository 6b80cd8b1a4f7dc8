"""Throw-away servers from Debian's packages for the integration tests (Prometheus,
Alertmanager): own config, own data directory, own free loopback port, stopped by the test.
scripts/test-services installs the binaries; a test fails, never skips, without them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from tests.integration.kafka_harness import HINT, stop

READY_TIMEOUT = 30.0  # seconds until a server answers /-/ready
STOP_TIMEOUT = 30.0  # seconds between SIGTERM and SIGKILL


def binary(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None
    )
    if found is None:
        raise RuntimeError(f"the {name} binary is not installed: {HINT}")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoopbackServer:
    """`argv` (with `{port}` and `{dir}` filled in) run in `workdir/name`, logging there."""

    def __init__(self, name: str, workdir: Path, argv: list[str]) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [binary(argv[0]), *(a.format(port=self.port, dir=self.dir) for a in argv[1:])],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/-/ready", timeout=2.0)[0] == 200:
                    return
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not ready within {timeout}s:\n{self.log()}")
            time.sleep(0.2)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        try:
            return stop(self.proc, signal.SIGTERM, timeout)
        finally:
            self._log.close()

    @contextlib.contextmanager
    def running(self) -> Iterator[Self]:
        """Ready for the block, then stopped; a server that does not exit 0 on SIGTERM
        fails the test."""
        try:
            self.wait_ready()
            yield self
        finally:
            code = self.terminate()
            assert code == 0, f"{self.name} exited {code} on SIGTERM:\n{self.log()}"
