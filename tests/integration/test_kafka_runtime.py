"""The Kafka runtime end to end: a real broker, a real Redis, real worker processes."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.catalogs import PAGED
from tests.integration.kafka_harness import (
    Namespace,
    Worker,
    metric_lines,
    produce,
    read_until,
    run,
)

CATALOG = PAGED


@pytest.fixture()
def ns(tmp_path: Path) -> Namespace:
    namespace = Namespace(workdir=tmp_path)
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(CATALOG)
    created = namespace.lupus("topics", "create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created") == 7
    again = namespace.lupus("topics", "create")
    assert again.returncode == 0 and again.stdout.count("exists") == 7
    return namespace


def hourly(product: str, values: list[float]) -> list[tuple[str, str, float | None]]:
    return [(product, f"2026-03-02T{h:02d}:00:00Z", v) for h, v in enumerate(values)]


def test_incident_becomes_anomaly_and_firing_alert_in_redis(ns: Namespace) -> None:
    worker = Worker(ns, "w1")
    try:
        worker.wait_started()
        values = [50.0, 60.0, 55.0, 500.0, 58.0]
        run(produce(ns, "lupus.metrics", metric_lines(iter(hourly("shop", values)))))
        anomalies = run(read_until(ns, "lupus.anomalies", lambda rs: len(rs) >= 2))
        alerts = run(read_until(ns, "lupus.alerts", lambda rs: len(rs) >= 2))
        metrics_url = worker.metrics_url()
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            exposition = response.read().decode()
    finally:
        assert worker.terminate(signal.SIGTERM) == 0, worker.log()
    assert [(a["state"], a["value"]) for a in anomalies] == [
        ("anomalous", 500.0),
        ("recovered", 58.0),
    ]
    assert [a["status"] for a in alerts] == ["firing", "resolved"]
    assert alerts[0]["monitor"] == "shop/orders" and alerts[0]["receiver"] == "shop-oncall"

    async def redis_state() -> dict[str, object]:
        client = aioredis.from_url(ns.redis_url)
        try:
            keys = await client.keys(f"{ns.redis_prefix}alert:*")
            assert len(keys) == 1
            raw = await client.hget(keys[0], "s")
            assert raw is not None
            return dict(json.loads(raw))
        finally:
            await client.aclose()

    state = run(redis_state())
    assert state["status"] == "resolved" and state["fingerprint"] == alerts[0]["fingerprint"]
    assert 'lupus_records_in_total{topic="' + ns.topic("lupus.metrics") + '"} 5.0' in exposition


def test_malformed_messages_go_to_the_deadletter_topic_with_reasons(ns: Namespace) -> None:
    worker = Worker(ns, "w1")
    try:
        worker.wait_started()
        good = metric_lines(iter(hourly("shop", [10.0])))
        bad = [
            (b"shop/orders", b"{not json"),
            (
                b"shop/orders",
                b'{"type": "metric", "product": "shop", "name": "orders", '
                b'"ts": "2026-03-02T01:00:00", "value": 1}',
            ),
            (
                b"shop/orders",
                b'[{"type": "metric", "product": "nope", "name": "orders", '
                b'"ts": "2026-03-02T01:00:00Z", "value": 1}, {"type": "metric", '
                b'"product": "shop", "name": "orders", "ts": "2026-03-02T01:00:00Z", "value": 1}]',
            ),
            (b"shop/orders", b"\xff\xfe"),
        ]
        run(produce(ns, "lupus.metrics", good + bad))
        dead = run(read_until(ns, "lupus.deadletter", lambda rs: len(rs) >= 4))
        with urllib.request.urlopen(worker.metrics_url(), timeout=10) as response:
            exposition = response.read().decode()
    finally:
        assert worker.terminate() == 0, worker.log()
    topic = ns.topic("lupus.metrics")
    assert f'lupus_records_in_total{{topic="{topic}"}} 5.0' in exposition  # messages
    assert f'lupus_input_records_total{{topic="{topic}"}} 6.0' in exposition  # good and bad
    reasons = [d["reason"] for d in dead]
    assert len(reasons) == 4
    assert any("malformed JSON" in r for r in reasons)
    assert any("field ts" in r for r in reasons)
    assert any("unknown product" in r and "record 0" in r for r in reasons)
    assert any("UTF-8" in r for r in reasons)
    assert all(d["source"].startswith(ns.topic("lupus.metrics")) for d in dead)


def test_run_with_a_broker_publishes_inputs_then_works_as_a_kafka_worker(ns: Namespace) -> None:
    import subprocess
    import sys

    lines = [
        json.dumps(
            {
                "type": "metric",
                "product": "shop",
                "name": "orders",
                "ts": f"2026-03-02T0{h}:00:00Z",
                "value": v,
            }
        )
        for h, v in enumerate([20.0, 30.0, 400.0])
    ]
    lines.append('{"type": "metric", "product": "shop"}')  # missing fields
    source = ns.workdir / "mixed.jsonl"
    source.write_text("\n".join(lines) + "\n")
    log = (ns.workdir / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lupus_stream.cli.main", "run", str(source)],
        env=ns.env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        alerts = run(read_until(ns, "lupus.alerts", lambda rs: len(rs) >= 1))
        dead = run(read_until(ns, "lupus.deadletter", lambda rs: len(rs) >= 1))
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        log.close()
    output = (ns.workdir / "run.log").read_text()
    assert code == 0, output
    assert "sent 3 records" in output and "started against" in output
    assert [a["status"] for a in alerts] == ["firing"]
    assert len(dead) == 1 and "missing required field" in dead[0]["reason"]
    assert dead[0]["source"].endswith("mixed.jsonl:4")


def test_a_silence_in_redis_mutes_the_alerts_a_worker_publishes(ns: Namespace) -> None:
    added = ns.lupus(
        "silence", "add", "-m", "severity=page", "-m", "product=shop",
        "--starts", "2026-03-02T02:00:00Z", "--until", "2026-03-02T04:00:00Z",
        "--comment", "maintenance",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    silence_id = added.stdout.split()[0]
    listed = ns.lupus("silence", "list", "--all")
    assert listed.returncode == 0 and listed.stdout.split()[0] == silence_id
    worker = Worker(ns, "w1")
    try:
        worker.wait_started()
        values = [50.0, 60.0, 55.0, 500.0, 58.0]
        run(produce(ns, "lupus.metrics", metric_lines(iter(hourly("shop", values)))))
        alerts = run(read_until(ns, "lupus.alerts", lambda rs: len(rs) >= 2))
    finally:
        assert worker.terminate(signal.SIGTERM) == 0, worker.log()
    # fired at 03:00 inside the silence, resolved at 04:00 as it ended: muted as well,
    # since nobody was told it fired
    assert [(a["status"], a["silenced_by"]) for a in alerts] == [
        ("firing", [silence_id]),
        ("resolved", [silence_id]),
    ]
