"""`lupus-stream silence` on the embedded runtime's state: a silence mutes the alerts of a
run, is listed until it ends and can be ended early."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.catalogs import SHOP_ORDERS, order_point

CATALOG = SHOP_ORDERS


def lupus(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env_free = {k: v for k, v in os.environ.items() if not k.startswith("LUPUS_")}  # no broker
    return subprocess.run(
        [sys.executable, "-m", "lupus_stream.cli.main", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        env=env_free,
    )


def metric(hour: int, value: float, region: str) -> str:
    return json.dumps(order_point(hour, value, region=region))


def alerts(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_silence_mutes_matching_alerts_of_a_run(tmp_path: Path) -> None:
    (tmp_path / "detectors").mkdir()
    (tmp_path / "detectors" / "shop.yaml").write_text(CATALOG)
    added = lupus(
        tmp_path,
        "silence", "add", "-m", "region=eu", "-m", "alertname=~ord.*",
        "--starts", "2026-03-02T00:00:00Z", "--until", "2026-03-02T06:00:00+00:00",
        "--comment", "planned load test", "--by", "ana",
        "--data-dir", "state",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    [silence_id] = re.findall(r"^([0-9a-f]{16}) ", added.stdout)
    assert 'region="eu"' in added.stdout and "ana: planned load test" in added.stdout
    records = tmp_path / "in.jsonl"
    records.write_text(
        "\n".join([metric(1, 500.0, "eu"), metric(1, 500.0, "us"), metric(7, 50.0, "eu")]) + "\n"
    )
    run = lupus(tmp_path, "run", str(records), "--data-dir", "state")
    assert run.returncode == 0, run.stderr
    got = [
        (a["status"], a["labels"]["region"], a["silenced_by"])
        for a in alerts(tmp_path / "state" / "alerts.jsonl")
    ]
    assert got == [
        ("firing", "eu", [silence_id]),
        ("firing", "us", []),
        ("resolved", "eu", [silence_id]),  # its firing was never notified
    ]
    assert f"(silenced by {silence_id})" in run.stdout
    [line] = lupus(tmp_path, "alerts", "--data-dir", "state").stdout.splitlines()
    assert line.startswith("FIRING   since 2026-03-02 01:00 [ticket] shop/orders {region=us}")
    assert "-> shop-oncall" in line and "silenced" not in line
    # a silence from now on mutes it from now on
    now = lupus(tmp_path, "silence", "add", "-m", "region=us", "--for", "1h", "--comment", "x",
                "--data-dir", "state")  # fmt: skip
    [line] = lupus(tmp_path, "alerts", "--data-dir", "state").stdout.splitlines()
    assert line.endswith(f"(silenced by {now.stdout.split()[0]})")


def test_list_and_expire(tmp_path: Path) -> None:
    def add(comment: str) -> str:
        out = lupus(tmp_path, "silence", "add", "-m", "severity=page", "--for", "2h",
                    "--comment", comment)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.split()[0]

    first, second = add("one"), add("two")
    listed = lupus(tmp_path, "silence", "list")
    assert [line.split()[:2] for line in listed.stdout.splitlines()] == [
        [first, "active"],
        [second, "active"],
    ]
    ended = lupus(tmp_path, "silence", "expire", first)
    assert ended.returncode == 0 and "expired" in ended.stdout
    assert [line.split()[0] for line in lupus(tmp_path, "silence", "list").stdout.splitlines()] == [
        second
    ]
    everything = lupus(tmp_path, "silence", "list", "--all").stdout.splitlines()
    assert [line.split()[:2] for line in everything] == [[first, "expired"], [second, "active"]]
    again = lupus(tmp_path, "silence", "expire", first)
    assert again.returncode == 2 and "already ended" in again.stderr
    unknown = lupus(tmp_path, "silence", "expire", "nope")
    assert unknown.returncode == 2 and "no silence nope" in unknown.stderr


def test_bad_silences_are_refused_with_a_reason(tmp_path: Path) -> None:
    cases = [
        (["-m", "region", "--for", "1h"], "write name=value"),
        (["-m", "region=eu", "--for", "1h", "--until", "2030-01-01T00:00:00Z"], "exactly one"),
        (["-m", "region=eu", "--until", "2030-01-01T00:00:00"], "needs a UTC offset"),
        (["-m", "region=eu", "--for", "soon"], "invalid duration 'soon'"),
        (["-m", "region=~(", "--for", "1h"], "matcher region"),
        (["-m", "bad name=x", "--for", "1h"], "the label name breaks the rule"),
        (["-m", "a=1", "-m", "a=2", "--for", "1h"], "label a matched twice"),
        (["-m", "a=1", "--until", "2001-01-01T00:00:00Z"], "end after it starts"),
        (["-m", "a=1", "--for", "1000000w"], "between 1900 and 2200"),
        (["-m", "a=1", "--for", "99999999999999999999w"], "between 1900 and 2200"),
    ]
    for args, reason in cases:
        out = lupus(tmp_path, "silence", "add", *args, "--comment", "x")
        assert out.returncode == 2 and reason in out.stderr, (args, out.stderr)
    assert lupus(tmp_path, "silence", "list", "--all").stdout == ""


def test_a_silence_not_started_yet_can_be_expired(tmp_path: Path) -> None:
    added = lupus(tmp_path, "silence", "add", "-m", "a=1", "--starts", "2100-01-01T00:00:00Z",
                  "--for", "1h", "--comment", "later")  # fmt: skip
    assert added.returncode == 0 and " pending " in added.stdout, added.stdout
    ended = lupus(tmp_path, "silence", "expire", added.stdout.split()[0])
    assert ended.returncode == 0 and " expired " in ended.stdout, ended.stdout
    assert lupus(tmp_path, "silence", "list").stdout == ""


def test_a_store_that_cannot_be_read_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "lupus.db").write_bytes(b"not a database")
    for args in (["silence", "list"], ["alerts"]):
        out = lupus(tmp_path, *args, "--data-dir", "state")
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert "cannot read the" in out.stderr and "state/lupus.db" in out.stderr
