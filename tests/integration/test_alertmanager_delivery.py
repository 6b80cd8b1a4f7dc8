"""Alerts reach on-call through a real Alertmanager (Debian's prometheus-alertmanager,
started here with a webhook receiver of the test's own): `lupus-stream notify` sends the
firing alerts of the embedded runtime or of the Kafka runtime, the resolution follows,
and a lupus-stream silence keeps an alert from paging anyone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from lupus_stream.alerting.alertmanager import Rejected, http_post
from tests.catalogs import PAGED_WITH_SUMMARY
from tests.integration.kafka_harness import (
    Namespace,
    Worker,
    metric_lines,
    produce,
    read_until,
    run,
)
from tests.integration.servers import LoopbackServer, free_port

CATALOG = PAGED_WITH_SUMMARY
WAIT = 30.0  # seconds for a notification to reach the webhook


class Webhook:
    """What Alertmanager posts to its webhook receiver, as it arrives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> list[tuple[str, dict[str, str], str]]:
        """(status, labels, endsAt) of every alert of every notification so far."""
        return [
            (a["status"], a["labels"], a["endsAt"]) for body in self.bodies for a in body["alerts"]
        ]

    def wait_for(self, status: str, timeout: float = WAIT) -> list[tuple[str, dict[str, str], str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(a[0] == status for a in self.alerts()):
                return self.alerts()
            time.sleep(0.2)
        raise TimeoutError(f"no {status} notification within {timeout}s: {self.bodies}")


class Alertmanager(LoopbackServer):
    def __init__(self, workdir: Path, webhook: str) -> None:
        (workdir / "alertmanager").mkdir()
        config = workdir / "alertmanager" / "alertmanager.yml"
        route = {"receiver": "hook", "group_wait": "1s", "group_interval": "1s"}
        hook = {"url": webhook, "send_resolved": True}
        config.write_text(
            json.dumps({"route": route, "receivers": [{"name": "hook", "webhook_configs": [hook]}]})
        )
        argv = [
            "prometheus-alertmanager",
            f"--config.file={config}",
            "--storage.path={dir}/data",
            "--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # one instance: no gossip port
        ]
        super().__init__("alertmanager", workdir, argv)

    def state_of(self, region: str) -> str | None:
        """Alertmanager's state of the alert of one region (active, suppressed), if any."""
        status, body = self.get("/api/v2/alerts")
        assert status == 200, body
        states = [a["status"]["state"] for a in json.loads(body) if a["labels"]["region"] == region]
        return states[0] if states else None

    def wait_state(self, region: str, wanted: str, timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while self.state_of(region) != wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{region} not {wanted}: {self.get('/api/v2/alerts')[1]!r}")
            time.sleep(0.2)


@pytest.fixture()
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture()
def alertmanager(tmp_path: Path, webhook: Webhook) -> Iterator[Alertmanager]:
    with Alertmanager(tmp_path, webhook.url).running() as server:
        yield server


def embedded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LUPUS_")}


def lupus(workdir: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lupus_stream.cli.main", *args],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def metric(hours_ago: float, value: float, region: str) -> str:
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
    labels = {"region": region, "model.version": "7"}
    return json.dumps(
        {"type": "metric", "product": "shop", "name": "orders", "ts": ts.isoformat(),
         "value": value, "labels": labels}
    )  # fmt: skip


def test_the_embedded_runtime_pages_through_alertmanager_and_resolves(
    tmp_path: Path, alertmanager: Alertmanager, webhook: Webhook
) -> None:
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(CATALOG)
    env = embedded_env()
    since = (datetime.now(UTC) - timedelta(hours=4)).isoformat()  # silences go by event time
    silenced = lupus(
        tmp_path, "silence", "add", "-m", "region=us", "--starts", since, "--for", "1d",
        "--comment", "test", "--data-dir", "state", env=env,
    )  # fmt: skip
    assert silenced.returncode == 0, silenced.stderr
    records = tmp_path / "in.jsonl"
    records.write_text(
        "\n".join([metric(3, 50.0, "eu"), metric(2, 500.0, "eu"), metric(2, 500.0, "us")]) + "\n"
    )
    assert lupus(tmp_path, "run", str(records), "--data-dir", "state", env=env).returncode == 0
    notifier = subprocess.Popen(
        [sys.executable, "-m", "lupus_stream.cli.main", "notify", "--interval", "1",
         "--alertmanager", alertmanager.url, "--data-dir", "state"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        [(status, labels, _)] = webhook.wait_for("firing")
        assert status == "firing"
        assert len(labels.pop("lupus_fingerprint")) == 16
        assert labels == {
            "alertname": "orders",
            "product": "shop",
            "severity": "page",
            "region": "eu",
            "model_version": "7",
        }
        assert webhook.bodies[0]["alerts"][0]["annotations"] == {"summary": "orders at 500.0"}
        # silenced while it fires: Alertmanager mutes it, and no longer once it is expired
        added = lupus(
            tmp_path, "silence", "add", "-m", "region=eu", "--for", "1h", "--comment", "fixing",
            "--data-dir", "state", env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        alertmanager.wait_state("eu", "suppressed")
        silence_id = added.stdout.split()[0]
        expired = lupus(tmp_path, "silence", "expire", silence_id, "--data-dir", "state", env=env)
        assert expired.returncode == 0, expired.stderr
        alertmanager.wait_state("eu", "active")
        with records.open("a") as handle:
            handle.write(metric(1, 50.0, "eu") + "\n")
        assert lupus(tmp_path, "run", str(records), "--data-dir", "state", env=env).returncode == 0
        seen = webhook.wait_for("resolved")
    finally:
        notifier.send_signal(signal.SIGTERM)
        output, _ = notifier.communicate(timeout=30)
    assert notifier.returncode == 0, output
    resolved = [a for a in seen if a[0] == "resolved"]
    recovered_at = datetime.fromisoformat(resolved[0][2])
    expected = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    assert abs((recovered_at - expected).total_seconds()) < 120  # the recovery's event time
    assert all(a[1]["region"] == "eu" for a in seen)  # the silenced series paged nobody


def test_notify_reads_the_kafka_runtime_alerts_from_redis(
    tmp_path: Path, alertmanager: Alertmanager, webhook: Webhook
) -> None:
    ns = Namespace(workdir=tmp_path)
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(CATALOG)
    assert ns.lupus("topics", "create").returncode == 0
    worker = Worker(ns, "w1")
    try:
        worker.wait_started()
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        points = [
            ("shop", (now - timedelta(hours=h)).isoformat(), v) for h, v in ((2, 50.0), (1, 500.0))
        ]
        run(produce(ns, "lupus.metrics", metric_lines(iter(points))))
        run(read_until(ns, "lupus.alerts", lambda rs: len(rs) >= 1))
    finally:
        assert worker.terminate(signal.SIGTERM) == 0, worker.log()
    listed = ns.lupus("alerts")
    assert listed.returncode == 0 and listed.stdout.startswith("FIRING "), listed.stderr
    assert "shop/orders" in listed.stdout and "[page]" in listed.stdout
    sent = ns.lupus("notify", "--once", "--alertmanager", alertmanager.url)
    assert sent.returncode == 0, sent.stderr
    assert "sent 1 firing, 0 ended, 0 silence changes" in sent.stderr
    [(_, labels, _)] = webhook.wait_for("firing")
    assert labels["alertname"] == "orders" and labels["product"] == "shop"


def test_an_alert_alertmanager_refuses_is_told_apart_from_an_outage(
    alertmanager: Alertmanager, webhook: Webhook
) -> None:
    post = http_post(alertmanager.url)
    ok = {"labels": {"alertname": "ok"}, "startsAt": "2026-01-01T00:00:00Z"}
    backwards = {
        "labels": {"alertname": "backwards"},
        "startsAt": "2026-01-01T01:00:00Z",
        "endsAt": "2026-01-01T00:00:00Z",
    }
    asyncio.run(post([ok]))
    with pytest.raises(Rejected, match="400"):
        asyncio.run(post([backwards]))
    with pytest.raises(RuntimeError, match="404") as wrong_path:
        asyncio.run(http_post(alertmanager.url + "/wrong/prefix")([ok]))
    assert not isinstance(wrong_path.value, Rejected)  # the round fails: sent again
    with pytest.raises((OSError, RuntimeError)) as down:
        asyncio.run(http_post(f"http://127.0.0.1:{free_port()}")([ok]))
    assert not isinstance(down.value, Rejected)
