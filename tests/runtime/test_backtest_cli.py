"""`lupus-stream backtest`: one output row per input row, scores in [0, 1]."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np


def lupus(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lupus_stream.cli.main", "backtest", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_series(path: Path, values: list[str], start: str = "2024-01-01 00:00:00") -> None:
    t0 = datetime.fromisoformat(start)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "value"])
        for i, value in enumerate(values):
            writer.writerow([(t0 + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S"), value])


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_scores_every_row_with_missing_values_and_a_level_shift(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = [f"{10 + rng.normal(0, 0.5):.3f}" for _ in range(200)]
    values[50] = ""  # missing
    values[120] = "30"  # spike
    for i in range(150, 200):
        values[i] = f"{25 + rng.normal(0, 0.5):.3f}"
    src = tmp_path / "series.csv"
    write_series(src, values)
    out = tmp_path / "scores.csv"
    proc = lupus(str(src), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read(out)
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "changepoint"]
    assert len(rows) == 200
    scores = [float(r["anomaly_score"]) for r in rows]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[50] == 0.0 and rows[50]["value"] == ""
    assert scores[120] >= 0.5 and scores[120] == max(scores[:150])  # the spike stands out
    changepoints = [i for i, r in enumerate(rows) if r["changepoint"] == "1"]
    assert changepoints == [150]


def test_output_dir_keeps_names_and_detector_settings_apply(tmp_path: Path) -> None:
    for name in ("a.csv", "b.csv"):
        write_series(tmp_path / name, ["1", "2", "3", "50", "2"])
    out_dir = tmp_path / "out"
    proc = lupus(
        str(tmp_path / "a.csv"),
        str(tmp_path / "b.csv"),
        "--output-dir",
        str(out_dir),
        "--detector",
        "threshold",
        "--set",
        "upper=10",
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("a.csv", "b.csv"):
        assert [r["anomaly_score"] for r in read(out_dir / name)] == [
            "0.000000",
            "0.000000",
            "0.000000",
            "1.000000",
            "0.000000",
        ]


def test_bad_rows_are_reported_and_still_written(tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    src.write_text("timestamp,value\n2024-01-01 00:00:00,1\nyesterday,2\n2024-01-01 02:00:00,abc\n")
    out = tmp_path / "o.csv"
    proc = lupus(str(src), "--output", str(out))
    assert proc.returncode == 0
    assert "line 3: field timestamp" in proc.stderr and "line 4: field value" in proc.stderr
    assert len(read(out)) == 3


def test_invalid_settings_name_the_field(tmp_path: Path) -> None:
    write_series(tmp_path / "s.csv", ["1"])
    proc = lupus(str(tmp_path / "s.csv"), "--output", str(tmp_path / "o.csv"), "--set", "windw=3")
    assert proc.returncode == 2 and "windw" in proc.stderr
    proc = lupus(str(tmp_path / "s.csv"), "--output", str(tmp_path / "o.csv"), "--detector", "nope")
    assert proc.returncode == 2 and "unknown detector kind" in proc.stderr


def test_times_and_values_beyond_the_contract_bounds_are_bad_rows(tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    src.write_text(
        "timestamp,value\n2024-01-01T00:00:00Z,1\n9999-12-31T23:59:59-05:00,2\n"
        "2024-01-01T02:00:00Z,1e200\n"
    )
    out = tmp_path / "o.csv"
    proc = lupus(str(src), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "line 3: field timestamp: Expected a time from 1900-01-01" in proc.stderr
    assert "line 4: field value: not finite or beyond 1e+100" in proc.stderr
    assert len(read(out)) == 3


def test_unreadable_files_name_the_line_and_a_bad_setting_its_value(tmp_path: Path) -> None:
    not_utf8 = tmp_path / "a.csv"
    not_utf8.write_bytes(b"timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T01:00:00Z,\xff\n")
    huge = tmp_path / "b.csv"
    huge.write_text(
        f'timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T01:00:00Z,"{"x" * 200_000}"\n'
    )
    for src, problem in ((not_utf8, "line 3: not UTF-8 (byte 60)"), (huge, "line 3: field larger")):
        proc = lupus(str(src), "--output", str(tmp_path / "o.csv"))
        assert proc.returncode == 1 and problem in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    proc = lupus(str(not_utf8), "--output", str(tmp_path / "o.csv"), "--set", "lower=[1")
    assert proc.returncode == 2 and "--set 'lower=[1': not a YAML value" in proc.stderr
    assert "Traceback" not in proc.stderr
