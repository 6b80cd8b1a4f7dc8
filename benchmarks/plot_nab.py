"""Plot one NAB series as a detector sees it: value, expected band, score, labelled windows.

    python benchmarks/plot_nab.py [--file CATEGORY/NAME.csv] [--detector KIND]
                                  [--set key=value ...] [--data DIR] [--out FILE.png]

The series goes through `lupus_stream.backtest` (the streaming engine, point by point), so
the band and the scores are what the monitor would have shown live. Shaded spans are
NAB's labelled anomaly windows; the grey span at the start is NAB's probationary period
(15 % of the file, at most 750 rows), which the scorer ignores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import yaml

from lupus_stream.backtest import backtest
from lupus_stream.detection import registry

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/bench/nab"
DEFAULT_FILE = "realTraffic/speed_t4013.csv"


def _param(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set {item!r}: expected key=value")
    return key.strip(), yaml.safe_load(value)


def _runs(points: list[tuple[datetime, Any]], gap: Any) -> list[list[tuple[datetime, Any]]]:
    """Split time-ordered points where consecutive times are more than `gap` apart."""
    runs: list[list[tuple[datetime, Any]]] = []
    for point in points:
        if not runs or point[0] - runs[-1][-1][0] > gap:
            runs.append([])
        runs[-1].append(point)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--file", default=DEFAULT_FILE, help="CATEGORY/NAME.csv under data/")
    parser.add_argument("--detector", default=registry.default_kind("series"))
    parser.add_argument("--set", type=_param, action="append", default=[], dest="params")
    parser.add_argument("--out", type=Path, default=Path("docs/nab-example.png"))
    args = parser.parse_args(argv)

    path = args.data / "data" / args.file
    windows = json.loads((args.data / "labels/combined_windows.json").read_text())[args.file]
    result = backtest(path, args.detector, dict(args.params))
    rows = [r for r in result.rows if r.t is not None]
    times = [datetime.fromisoformat(r.timestamp) for r in rows]
    values = [r.x for r in rows]
    banded = [(t, r) for t, r in zip(times, rows, strict=True) if r.lower is not None]
    gap = 5 * statistics.median(b - a for a, b in itertools.pairwise(times))

    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(12, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    probation = min(int(0.15 * len(rows)), 750)
    for axis in (top, bottom):
        axis.axvspan(times[0], times[probation], color="0.9", lw=0)
        for start, end in windows:
            axis.axvspan(
                datetime.fromisoformat(start), datetime.fromisoformat(end), color="#f4c7c3", lw=0
            )
    first = True
    for span in _runs(banded, gap):  # no band drawn across a gap in the data
        top.fill_between(
            [t for t, _ in span],
            [r.lower for _, r in span],
            [r.upper for _, r in span],
            color="#9ecae1",
            alpha=0.6,
            lw=0,
            label="expected band" if first else None,
        )
        top.plot([t for t, _ in span], [r.expected for _, r in span], color="#3182bd", lw=0.8)
        first = False
    top.plot(times, values, color="black", lw=0.7, label="value")
    top.set_title(f"{args.file}: detector {args.detector!r} at its defaults, online")
    top.legend(loc="upper left", fontsize=8)
    bottom.plot(times, [r.score for r in rows], color="#d62728", lw=0.8)
    bottom.set_ylim(0, 1.02)
    bottom.set_ylabel("anomaly score")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    fig.text(
        0.01,
        0.01,
        "red spans: NAB labelled windows; grey: probationary period",
        fontsize=8,
        color="0.3",
    )
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} ({len(rows)} rows, {result.anomalies} anomalous)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
