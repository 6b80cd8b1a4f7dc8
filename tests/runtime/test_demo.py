"""The demo end to end: every injected incident alerts, clean periods stay quiet."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from lupus_stream.demo.generate import scenario

ROOT = Path(__file__).parents[2]


def test_demo_alerts_on_every_incident_and_nowhere_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "lupus_stream.cli.main", "demo", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert {e["status"] for e in events} <= {"firing", "resolved"}
    firing = [e for e in events if e["status"] == "firing"]
    incidents = scenario().incidents
    for incident in incidents:
        hits = [
            e
            for e in firing
            if e["monitor"] == incident.monitor
            and incident.start <= datetime.fromisoformat(e["at"]) <= incident.end
        ]
        assert hits, f"no firing alert for {incident.name}"
    for event in firing:
        at = datetime.fromisoformat(event["at"])
        assert any(
            inc.monitor == event["monitor"] and inc.start <= at <= inc.end for inc in incidents
        ), f"alert in a clean period: {event}"
    anomalies = (out / "anomalies.jsonl").read_text().splitlines()
    assert anomalies and all(0.0 <= json.loads(a)["score"] <= 1.0 for a in anomalies)
    dead = [json.loads(line) for line in (out / "deadletter.jsonl").read_text().splitlines()]
    assert len(dead) == 3 and all(d["reason"] for d in dead)
