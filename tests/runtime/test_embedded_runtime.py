"""The embedded runtime as a user runs it: files, stdin, HTTP, Ctrl-C and restarts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.catalogs import PAGED_WITH_SUMMARY, order_point

CATALOG = PAGED_WITH_SUMMARY


def metric(hour: int, value: float, product: str = "shop") -> str:
    return json.dumps(order_point(hour, value, product))


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(CATALOG)
    return tmp_path


def lupus(workdir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lupus_stream.cli.main", *args],
        cwd=workdir,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_file_run_alerts_deadletters_and_resumes_without_realerting(workdir: Path) -> None:
    records = workdir / "in.jsonl"
    good = [metric(h, 50.0) for h in range(5)] + [metric(5, 250.0), metric(6, 260.0)]
    bad = [
        '{"type": "metric", "product": "shop", "name": "orders", "ts": "2026-03-02T01:00:00"}',
        metric(3, 1.0, product="unknown-shop"),
        "not json at all",
    ]
    records.write_text("\n".join(good[:3] + bad + good[3:]) + "\n")
    first = lupus(workdir, "run", str(records), "--data-dir", "state")
    assert first.returncode == 0, first.stderr
    alerts = lines(workdir / "state" / "alerts.jsonl")
    assert [a["status"] for a in alerts] == ["firing"]
    assert alerts[0]["annotations"] == {"summary": "orders at 250.0"}
    dead = lines(workdir / "state" / "deadletter.jsonl")
    assert len(dead) == 3
    reasons = " | ".join(str(d["reason"]) for d in dead)
    assert "field ts" in reasons and "unknown product" in reasons and "malformed JSON" in reasons

    # same file again: nothing is re-read, nothing re-alerts
    second = lupus(workdir, "run", str(records), "--data-dir", "state")
    assert second.returncode == 0, second.stderr
    assert "resuming at byte" in second.stderr
    assert len(lines(workdir / "state" / "alerts.jsonl")) == 1

    # new data appended: the firing alert resolves, once
    with records.open("a") as handle:
        handle.write(metric(7, 40.0) + "\n" + metric(8, 45.0) + "\n")
    third = lupus(workdir, "run", str(records), "--data-dir", "state")
    assert third.returncode == 0, third.stderr
    statuses = [a["status"] for a in lines(workdir / "state" / "alerts.jsonl")]
    assert statuses == ["firing", "resolved"]


def test_unreadable_state_is_an_error_that_says_where(workdir: Path) -> None:
    records = workdir / "in.jsonl"
    records.write_text(metric(0, 50.0) + "\n")
    assert lupus(workdir, "run", str(records), "--data-dir", "state").returncode == 0
    with sqlite3.connect(workdir / "state" / "lupus.db") as db:
        db.execute("UPDATE checkpoints SET value = ? WHERE name = 'engine'", (b"\x93garbage",))
    again = lupus(workdir, "run", str(records), "--data-dir", "state")
    assert again.returncode == 1
    assert "state in state/lupus.db cannot be restored" in again.stderr
    assert "engine snapshot unreadable" in again.stderr and "Traceback" not in again.stderr
    (workdir / "other").mkdir()
    (workdir / "other" / "lupus.db").write_bytes(b"not a database at all" * 100)
    third = lupus(workdir, "run", str(records), "--data-dir", "other")
    assert third.returncode == 1 and "other/lupus.db cannot be restored" in third.stderr
    assert "Traceback" not in third.stderr
    for name, value in (("engine", "text, not bytes"), ("offset:" + str(records), b"-5")):
        shutil.rmtree(workdir / "state")
        assert lupus(workdir, "run", str(records), "--data-dir", "state").returncode == 0
        with sqlite3.connect(workdir / "state" / "lupus.db") as db:
            db.execute(
                "INSERT INTO checkpoints (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name if name == "engine" else "offset:" + str(records.resolve()), value),
            )
        broken = lupus(workdir, "run", str(records), "--data-dir", "state")
        assert broken.returncode == 1 and "cannot be restored" in broken.stderr, broken.stderr
        assert "Traceback" not in broken.stderr


def test_a_file_put_in_the_place_of_another_is_read_from_the_start(workdir: Path) -> None:
    records = workdir / "in.jsonl"
    records.write_text(metric(0, 50.0) + "\n")
    assert lupus(workdir, "run", str(records), "--data-dir", "state").returncode == 0
    fresh = workdir / "fresh.jsonl"  # longer than where the first run ended
    fresh.write_text("\n".join(metric(h, 50.0) for h in range(1, 6)) + "\n" + metric(6, 500.0))
    os.replace(fresh, records)
    again = lupus(workdir, "run", str(records), "--data-dir", "state")
    assert again.returncode == 0, again.stderr
    assert "another file than the one read before" in again.stderr
    assert [a["status"] for a in lines(workdir / "state" / "alerts.jsonl")] == ["firing"]


def test_a_file_replaced_by_a_shorter_one_is_read_from_the_start(workdir: Path) -> None:
    records = workdir / "in.jsonl"
    records.write_text("\n".join(metric(h, 50.0) for h in range(6)) + "\n")
    assert lupus(workdir, "run", str(records), "--data-dir", "state").returncode == 0
    records.write_text(metric(7, 500.0) + "\n")  # shorter than where the first run ended
    again = lupus(workdir, "run", str(records), "--data-dir", "state")
    assert again.returncode == 0, again.stderr
    assert "shorter than where it was left" in again.stderr
    assert [a["status"] for a in lines(workdir / "state" / "alerts.jsonl")] == ["firing"]


def test_restart_replaying_the_same_records_does_not_alert_twice(workdir: Path) -> None:
    body = "\n".join([metric(h, 50.0) for h in range(3)] + [metric(3, 500.0)]) + "\n"
    (workdir / "a.jsonl").write_text(body)
    (workdir / "b.jsonl").write_text(body)  # another file: offsets do not protect us here
    assert lupus(workdir, "run", "a.jsonl", "--data-dir", "s").returncode == 0
    assert lupus(workdir, "run", "b.jsonl", "--data-dir", "s").returncode == 0
    assert [a["status"] for a in lines(workdir / "s" / "alerts.jsonl")] == ["firing"]


def test_stdin_input(workdir: Path) -> None:
    text = "\n".join([metric(0, 10.0), metric(1, 150.0), "[]", "{"]) + "\n"
    proc = lupus(workdir, "run", "--stdin", "--data-dir", "s", stdin=text)
    assert proc.returncode == 0, proc.stderr
    assert [a["status"] for a in lines(workdir / "s" / "alerts.jsonl")] == ["firing"]
    assert len(lines(workdir / "s" / "deadletter.jsonl")) == 1


def test_run_reads_the_monitor_directory_of_the_settings_file(workdir: Path) -> None:
    (workdir / "detectors").rename(workdir / "monitors")
    (workdir / "settings.yaml").write_text("detectors: monitors\n")
    (workdir / "in.jsonl").write_text(metric(0, 10.0) + "\n" + metric(1, 150.0) + "\n")
    proc = lupus(workdir, "run", "in.jsonl", "--settings", "settings.yaml", "--data-dir", "s")
    assert proc.returncode == 0, proc.stderr
    assert [a["status"] for a in lines(workdir / "s" / "alerts.jsonl")] == ["firing"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--http-port", "0"], "--http-port is for the embedded runtime"),
        (["--event-time", "in.jsonl"], "--wall-clock/--event-time is for the embedded runtime"),
        (["--detectors", "elsewhere", "in.jsonl"], "elsewhere: monitor directory does not exist"),
    ],
)
def test_run_with_a_broker_refuses_what_only_the_embedded_runtime_does(
    workdir: Path, args: list[str], said: str
) -> None:
    """Refused before any connection (no broker listens at the address)."""
    (workdir / "in.jsonl").write_text(metric(0, 10.0) + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "lupus_stream.cli.main", "run", *args],
        cwd=workdir,
        env={**os.environ, "LUPUS_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert said in " ".join(proc.stderr.split())


def test_invalid_monitor_file_is_reported_with_file_monitor_and_field(workdir: Path) -> None:
    (workdir / "detectors" / "shop.yaml").write_text(CATALOG.replace("upper: 100", "uper: 100"))
    proc = lupus(workdir, "check")
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "shop.yaml" in message and "'orders'" in message and "uper" in message


def post(
    url: str, body: bytes, content_type: str = "application/json"
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_ingest_and_clean_stop_on_ctrl_c(workdir: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lupus_stream.cli.main",
            "run",
            "--http-port",
            "0",
            "--data-dir",
            "s",
            "--event-time",
        ],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            found = re.search(r"POST (http://127\.0\.0\.1:\d+)/ingest", line)
            url = found.group(1) if found else None
        assert url is not None, "the ingest endpoint never came up"
        batch = "[" + ",".join([metric(0, 10.0), metric(1, 20.0)]) + "]"
        assert post(url + "/ingest", batch.encode()) == (
            200,
            {"records": 2, "deadlettered": 0, "anomalies": 0, "firing": 0},
        )
        ndjson = "\n".join([metric(2, 300.0), '{"type": "metric"}']).encode()
        status, counts = post(url + "/ingest", ndjson, "application/x-ndjson")
        assert status == 207 and counts["firing"] == 1 and counts["deadlettered"] == 1
        status, counts = post(url + "/ingest", b"\xff\xfe")
        assert status == 422 and counts["deadlettered"] == 1
        for empty, kind in ((b"", "application/json"), (b"\n \n", "application/x-ndjson")):
            assert post(url + "/ingest", empty, kind) == (400, {"error": "empty body"})
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
    alerts = lines(workdir / "s" / "alerts.jsonl")
    assert [a["status"] for a in alerts] == ["firing"]
    assert "processed 3 records" in " ".join((proc.stderr.read() if proc.stderr else "").split())
