"""Per-point update rate and serialized state size of every series detector.

Data: hourly points with a daily and a weekly cycle, a slow trend and noise (ten weeks).
Each detector is timed two ways: `update` called once per point, and, for detectors with
a batch path of their own (`native_batch`), `update_batch` on `--batch` points at a time
(24 by default: a day of hourly points), which is how the engine feeds them, one message's
points per series; verdicts are then built only when read, as the engine reads them.
River's ADWIN is timed on the same values in the same run, as the reference for a cheap
streaming detector. The last line is `ratio=R`: the default detector's rate through the
path the engine uses divided by ADWIN's (higher is better), the median over `--pairs`
runs of the two timed one right after the other, so that the machine slowing down or
speeding up between the two measurements does not move it (the table's rates are the
best of `--repeat` runs each).

    python benchmarks/detector_speed.py [--points N] [--repeat K] [--batch B] [--pairs P]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from river.drift import ADWIN

from lupus_stream.detection import registry

HOUR = 3600.0


def hourly_weekly(points: int, seed: int = 1) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    ts = [i * HOUR for i in range(points)]
    xs = [
        1000.0
        + 0.05 * i
        + 200.0 * math.sin(2 * math.pi * i / 24)
        + 80.0 * math.sin(2 * math.pi * i / 168)
        + float(rng.normal(0, 20))
        for i in range(points)
    ]
    return ts, xs


def best_rate(run: Callable[[], None], points: int, repeat: int) -> float:
    """Points per second of the fastest of `repeat` runs (the least disturbed one)."""
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return points / best


def paired_ratio(run: Callable[[], None], reference: Callable[[], None], pairs: int) -> float:
    """Median over `pairs` of (reference's time / run's time), each pair timed back to back."""
    ratios = []
    for _ in range(pairs):
        started = time.perf_counter()
        reference()
        middle = time.perf_counter()
        run()
        ratios.append((middle - started) / (time.perf_counter() - middle))
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=24 * 7 * 10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--pairs", type=int, default=11)
    args = parser.parse_args()
    ts, xs = hourly_weekly(args.points)

    def adwin() -> None:
        detector = ADWIN()
        for x in xs:
            detector.update(x)

    adwin_rate = best_rate(adwin, args.points, args.repeat)
    series = sorted(k for k in registry.kinds() if registry.input_kind(k) == "series")
    default = registry.default_kind("series")
    print(
        f"{args.points} hourly points (daily + weekly cycle, trend, noise), best of "
        f"{args.repeat} runs"
    )
    print(
        f"{'detector':<12} {'points/s':>12} {'us/point':>10} {'batched/s':>12} "
        f"{'us/point':>10} {'state bytes':>12}"
    )
    print(f"{'adwin':<12} {adwin_rate:>12,.0f} {1e6 / adwin_rate:>10.2f}")
    engine_rate: dict[str, float] = {}
    engine_run: dict[str, Callable[[], None]] = {}
    for kind in series:
        params = {"upper": 1e9} if kind == "threshold" else {}

        def one(kind: str = kind, params: dict[str, object] = params) -> None:
            detector = registry.make(kind, params)
            update = detector.update
            for t, x in zip(ts, xs, strict=True):
                update(t, x)

        def batched(kind: str = kind, params: dict[str, object] = params) -> None:
            detector = registry.make(kind, params)
            for i in range(0, len(ts), args.batch):
                detector.update_batch(ts[i : i + args.batch], xs[i : i + args.batch])

        detector = registry.make(kind, params)
        detector.update_many(ts, xs)  # also the warm-up (a compiled path compiles here)
        size = len(detector.to_bytes())
        rate = best_rate(one, args.points, args.repeat)
        line = f"{kind:<12} {rate:>12,.0f} {1e6 / rate:>10.2f}"
        engine_rate[kind], engine_run[kind] = rate, one
        if detector.native_batch:
            engine_rate[kind] = batch_rate = best_rate(batched, args.points, args.repeat)
            engine_run[kind] = batched
            line += f" {batch_rate:>12,.0f} {1e6 / batch_rate:>10.2f}"
        else:
            line += f" {'-':>12} {'-':>10}"
        mark = " (default)" if kind == default else ""
        print(f"{line} {size:>12,}{mark}")
    print(f"best rates: {default} / adwin = {engine_rate[default] / adwin_rate:.3f}")
    print(f"ratio={paired_ratio(engine_run[default], adwin, args.pairs):.3f}")


if __name__ == "__main__":
    main()
