"""Scaling out and crashing: the outcome must not depend on either.

A reference run (one worker, never interrupted) and a variant run (two workers in one
group; or one worker stopped mid-stream by SIGTERM or SIGKILL and started again) read
the same input. They must produce the same anomaly ids and the same alert transitions,
with no transition published twice.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.integration.kafka_harness import (
    Namespace,
    Worker,
    produce,
    read_all,
    run,
    wait_drained,
    wait_outbox_empty,
)

METRICS = [f"load{i}" for i in range(8)]  # 8 signal keys, spread over the partitions
HOSTS = 3
CATALOG = "product: fleet\nowner: team-fleet\nreceiver: fleet-oncall\nmonitors:\n" + "".join(
    f"  - name: {m}\n    signal: {{kind: metric, name: {m}}}\n"
    "    detector: {kind: robust, window: 24, min_history: 6}\n    alert: {severity: page}\n"
    for m in METRICS
)
POINTS = 240
BATCH = 20


def messages() -> list[tuple[bytes, bytes]]:
    """Batched metric messages: 8 metrics x 3 hosts, with spikes and a level shift."""
    rng = np.random.default_rng(42)
    out = []
    for start in range(0, POINTS, BATCH):
        for m, metric in enumerate(METRICS):
            batch = []
            for host in range(HOSTS):
                s = m * HOSTS + host
                for h in range(start, start + BATCH):
                    value = 50 + 5 * rng.normal()
                    if h % 53 == s % 7 + 20:
                        value += 60  # a spike
                    if s % 5 == 0 and h >= 180:
                        value += 40  # a lasting shift on some hosts
                    day, hour = divmod(h, 24)
                    batch.append(
                        {
                            "type": "metric",
                            "product": "fleet",
                            "name": metric,
                            "labels": {"host": f"h{host}"},
                            "ts": f"2026-03-{day + 1:02d}T{hour:02d}:00:00Z",
                            "value": round(value, 3),
                        }
                    )
            out.append((f"fleet/{metric}".encode(), json.dumps(batch).encode()))
    return out


def namespace(tmp_path: Path, name: str) -> Namespace:
    workdir = tmp_path / name
    (workdir / "detectors").mkdir(parents=True)
    (workdir / "detectors" / "fleet.yaml").write_text(CATALOG)
    ns = Namespace(workdir=workdir)
    created = ns.lupus("topics", "create")
    assert created.returncode == 0, created.stderr
    return ns


def outcome(ns: Namespace) -> tuple[set[str], list[tuple[str, str, str]]]:
    run(wait_drained(ns, ["lupus.metrics", "lupus.anomalies"]))
    run(wait_outbox_empty(ns))
    anomalies = run(read_all(ns, "lupus.anomalies"))
    alerts = run(read_all(ns, "lupus.alerts"))
    transitions = [(a["fingerprint"], a["status"], a["at"]) for a in alerts]
    return {a["id"] for a in anomalies}, transitions


@pytest.fixture(scope="module")
def expected(tmp_path_factory: pytest.TempPathFactory) -> tuple[set[str], list[Any]]:
    """The reference outcome: one worker, never interrupted."""
    return reference(tmp_path_factory.mktemp("reference"), messages())


def reference(tmp_path: Path, msgs: list[tuple[bytes, bytes]]) -> tuple[set[str], list[Any]]:
    ns = namespace(tmp_path, "reference")
    run(produce(ns, "lupus.metrics", msgs))
    worker = Worker(ns, "ref")
    try:
        worker.wait_started()
        result = outcome(ns)
    finally:
        assert worker.terminate() == 0, worker.log()
    return result


def assert_same(expected: tuple[set[str], list[Any]], got: tuple[set[str], list[Any]]) -> None:
    ids, transitions = expected
    got_ids, got_transitions = got
    assert len(ids) > 20 and len(transitions) > 10, "the input must produce real work"
    assert got_ids == ids
    duplicates = [t for t, n in Counter(got_transitions).items() if n > 1]
    assert not duplicates, f"transitions published twice: {duplicates}"
    assert sorted(got_transitions) == sorted(transitions)


def owned_partitions(worker: Worker) -> float:
    with urllib.request.urlopen(worker.metrics_url(), timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("lupus_owned_partitions "):
                return float(line.split()[1])
    return 0.0


def test_two_workers_split_partitions_and_alert_like_one(
    tmp_path: Path, expected: tuple[set[str], list[Any]]
) -> None:
    msgs = messages()
    ns = namespace(tmp_path, "pair")
    workers = [Worker(ns, "a"), Worker(ns, "b")]
    try:
        for worker in workers:
            worker.wait_started()
        run(produce(ns, "lupus.metrics", msgs))
        got = outcome(ns)
        owned = [owned_partitions(w) for w in workers]
    finally:
        codes = [w.terminate() for w in workers]
    assert codes == [0, 0], [w.log() for w in workers]
    assert all(n > 0 for n in owned), f"partitions per worker: {owned}"
    assert_same(expected, got)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_worker_stopped_mid_stream_loses_nothing_and_repeats_nothing(
    tmp_path: Path, sig: signal.Signals, expected: tuple[set[str], list[Any]]
) -> None:
    msgs = messages()
    ns = namespace(tmp_path, "restart")
    third = len(msgs) // 3
    first = Worker(ns, "first", instance="worker-0")
    try:
        first.wait_started()
        run(produce(ns, "lupus.metrics", msgs[:third]))
        run(wait_for_anomalies(ns, 1))  # the worker is busy with the stream
        run(produce(ns, "lupus.metrics", msgs[third : 2 * third]))
    finally:
        code = first.terminate(sig)
    assert code == (0 if sig == signal.SIGTERM else -signal.SIGKILL), first.log()
    run(produce(ns, "lupus.metrics", msgs[2 * third :]))  # arrives while nobody runs
    second = Worker(ns, "second", instance="worker-0")  # the same pod, restarted
    try:
        second.wait_started()
        got = outcome(ns)
    finally:
        assert second.terminate() == 0, second.log()
    assert_same(expected, got)


async def wait_for_anomalies(ns: Namespace, n: int) -> None:
    from tests.integration.kafka_harness import read_until

    records = await read_until(ns, "lupus.anomalies", lambda rs: len(rs) >= n, timeout=60)
    assert len(records) >= n
