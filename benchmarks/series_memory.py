"""Memory a seasonal series holds in a running engine, measured with tracemalloc.

A metric monitor's `max_series` bounds how many label sets one engine tracks; this is
what each costs. For hourly points (two weeks, while the period decision still keeps
the raw history, and eight weeks; daily cycle) and 5-minute points (three weeks, daily
cycle) it feeds `--series` detectors through `update_many` (the batch path
the engine uses) after the compiled update is loaded, and prints the traced bytes per
series, the period found and the serialized state size.

    python benchmarks/series_memory.py [--series N]
"""

from __future__ import annotations

import argparse
import gc
import math
import tracemalloc

import numpy as np

from lupus_stream.detection import seasonal_steady
from lupus_stream.detection.seasonal import SeasonalDetector

DAY = 86400.0


def traced_per_series(step: float, points: int, series: int) -> tuple[float, str, int]:
    rng = np.random.default_rng(1)
    ts = [i * step for i in range(points)]
    kept: list[SeasonalDetector] = []
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for _ in range(series):
        noise = rng.normal(0.0, 2.0, points)
        xs = [
            100.0 + 20.0 * math.sin(2 * math.pi * t / DAY) + float(e)
            for t, e in zip(ts, noise, strict=True)
        ]
        detector = SeasonalDetector()
        detector.update_many(ts, xs)
        kept.append(detector)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / series, str(kept[0].periods), len(kept[0].to_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=50)
    args = parser.parse_args()
    seasonal_steady.warm()  # the compiled code's own allocations are not a series'
    for label, step, points in (
        ("hourly, 2 weeks", 3600.0, 24 * 7 * 2),  # the weekly test still to come
        ("hourly, 8 weeks", 3600.0, 24 * 7 * 8),
        ("5-minute, 3 weeks", 300.0, 288 * 21),
    ):
        per_series, periods, state = traced_per_series(step, points, args.series)
        print(
            f"{label:18s} {per_series / 1024:6.1f} KB a series in memory "
            f"(periods {periods}, serialized state {state / 1024:.1f} KB)"
        )


if __name__ == "__main__":
    main()
