"""A real Prometheus server scrapes a real worker: the metrics are usable as deployed.

The test starts a worker (metrics on a free port), a Prometheus server of its own on a free
loopback port with a temporary config and TSDB that scrapes that worker every second, sends
metric records through Kafka and polls Prometheus' query API until the worker's records-in
counter for the metrics topic shows them. It needs the services of scripts/test-services
(which also installs the `prometheus` binary) and fails, never skips, without them.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.catalogs import SHOP_ORDERS
from tests.integration.kafka_harness import Namespace, Worker, metric_lines, produce, run
from tests.integration.servers import LoopbackServer

CATALOG = SHOP_ORDERS

JOB = "lupus-worker"
QUERY_TIMEOUT = 60.0  # seconds until the scraped counter shows every record sent


class Prometheus(LoopbackServer):
    """A Prometheus server scraping `target` every second."""

    def __init__(self, workdir: Path, target: str) -> None:
        (workdir / "prometheus").mkdir()
        config = workdir / "prometheus" / "prometheus.yml"
        # JSON is YAML: no quoting questions for the target.
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [
                        {"job_name": JOB, "static_configs": [{"targets": [target]}]}
                    ],
                },
                indent=2,
            )
        )
        argv = [
            "prometheus",
            f"--config.file={config}",
            "--storage.tsdb.path={dir}/tsdb",
            "--web.listen-address=127.0.0.1:{port}",
        ]
        super().__init__("prometheus", workdir, argv)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the vector's samples (`metric` labels, `value` [ts, "v"])."""
        status, body = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (status, answer)
        assert answer["data"]["resultType"] == "vector", answer
        return list(answer["data"]["result"])


@pytest.fixture()
def ns(tmp_path: Path) -> Namespace:
    namespace = Namespace(workdir=tmp_path)
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(CATALOG)
    created = namespace.lupus("topics", "create")
    assert created.returncode == 0, created.stdout + created.stderr
    return namespace


@pytest.fixture()
def worker(ns: Namespace) -> Iterator[Worker]:
    started = Worker(ns, "w1")
    try:
        started.wait_started()
        yield started
    finally:
        assert started.terminate(signal.SIGTERM) == 0, started.log()


@pytest.fixture()
def prometheus(tmp_path: Path, worker: Worker) -> Iterator[Prometheus]:
    target = urllib.parse.urlsplit(worker.metrics_url())
    assert target.path == "/metrics" and target.port, worker.metrics_url()
    with Prometheus(tmp_path, target.netloc).running() as server:
        yield server


def test_prometheus_scrapes_the_worker_records_in_counter(
    ns: Namespace, worker: Worker, prometheus: Prometheus
) -> None:
    values = [50.0, 60.0, 55.0, 500.0, 58.0]
    points = [("shop", f"2026-03-02T{h:02d}:00:00Z", v) for h, v in enumerate(values)]
    run(produce(ns, "lupus.metrics", metric_lines(iter(points))))  # one message per record

    topic = ns.topic("lupus.metrics")
    promql = f'lupus_records_in_total{{topic="{topic}"}}'
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + QUERY_TIMEOUT
    while time.monotonic() < deadline:
        seen = prometheus.query(promql)
        if seen and float(seen[0]["value"][1]) >= len(values):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(
            f"{promql} did not reach {len(values)} within {QUERY_TIMEOUT}s: {seen}\n"
            f"targets: {prometheus.get('/api/v1/targets')[1].decode()}\n"
            f"prometheus log:\n{prometheus.log()}\nworker log:\n{worker.log()}"
        )

    assert len(seen) == 1, seen
    sample = seen[0]
    assert float(sample["value"][1]) == len(values), sample
    target = urllib.parse.urlsplit(worker.metrics_url()).netloc
    assert sample["metric"] == {
        "__name__": "lupus_records_in_total",
        "instance": target,
        "job": JOB,
        "topic": topic,
    }
    up = prometheus.query(f'up{{job="{JOB}"}}')
    assert [float(s["value"][1]) for s in up] == [1.0], up
