"""Online change-point detection scored as in the Turing change-point benchmark.

    python benchmarks/changepoint.py [--jobs N] [--margin M]
    python benchmarks/changepoint.py --calibrate [--replicates R] [--length L] [--cache DIR]
    python benchmarks/changepoint.py --check [--replicates R] [--length L]

Evaluation: every series is fed point by point, in time order, to each method, which
never sees the future. Methods: the `changepoint` detector at its default parameters
(a change placed at its `changepoint_at`, the estimated start of the new regime); the
same with `season: none` (the test always on the raw points); "no change" (only the
series start); river's ADWIN and PageHinkley at their defaults (a change placed where
they signal drift: they do not estimate where it began).

Metrics (van den Burg & Williams 2020, "An evaluation of change point detection
algorithms"): F1 with a margin of `--margin` points (default 5) and segmentation
covering, the series start counting as a change point in both the annotation and the
prediction, one annotation per series. "No change" thus scores F1 = 1 on a series
without change and 2/(2 + k) on one with k annotated changes.

Series:
- synthetic, generated here from a fixed seed (`EVAL_SEED`): level shifts, trend
  changes, level shifts under other noise scales and noise distributions, under AR(1)
  noise and among isolated spikes, variance changes (which the detector does not model),
  series without change (white, heavy-tailed and AR(1) noise, spikes, a steady trend),
  and hourly series under a daily cycle of 5 to 10 noise sds, with 0 to 2 level shifts
  (the only series given real event times: the others are fed with one second between
  points, where no daily or weekly cycle can be found);
- real, from files that PyPI packages ship: the Nile flow of statsmodels (change near
  1898, Cobb 1978, as its description says) and, if `sktime` is installed, its UK
  seat-belt series (`label` marks February 1983, the month the seat-belt law took effect)
  and its two segmentation series from the time-series segmentation benchmark (TSSB,
  change points as given by sktime's `load_gun_point_segmentation` and
  `load_electric_devices_segmentation`). sktime is only read, never imported.

The table gives, per group, the mean F1 and cover of each method; the LAST line is the
detector's overall F1 and cover next to those of "no change".

`--calibrate` fits the detector's false-alarm constants (`_ARL`, `_TAIL` in
`lupus_stream/detection/changepoint.py`) on white Gaussian noise only, never on the
evaluation series: with alarms switched off, the statistic at every point of R series of
L points; after a warm-up of two windows, the points per cluster of exceedances of h
(exceedances less than a window apart are one cluster, as one alarm restarts the
segment) and the per-point tail, then least squares of `ln ARL = A h + B ln h + C` (where
ARL >= 1000) and of `ln P = a s + b ln s + c`. `--check` counts the alarms of the real
detector, restarts included, on series without change: white noise at several settings,
and heavy-tailed, uniform and AR(1) noise at the defaults.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from river.drift import ADWIN, PageHinkley

from lupus_stream.detection.changepoint import ChangePointDetector, ChangePointParams

EVAL_SEED = 20200314
CALIBRATION_SEED = 7_000_000  # disjoint from EVAL_SEED's streams
MIN_FIT_ARL = 1000.0  # below, separate alarms less than a window apart would merge
Array = np.ndarray[Any, np.dtype[np.float64]]


# -- metrics (van den Burg & Williams 2020) ------------------------------------------------


def true_positives(truth: Sequence[int], pred: Sequence[int], margin: int) -> int:
    """Annotated points matched by a distinct prediction within `margin` (closest first)."""
    free = set(pred)
    hits = 0
    for tau in sorted(set(truth)):
        close = sorted((abs(tau - x), x) for x in free if abs(tau - x) <= margin)
        if close:
            free.remove(close[0][1])
            hits += 1
    return hits


def f_measure(truth: Sequence[int], pred: Sequence[int], margin: int = 5) -> float:
    t = set(truth) | {0}
    x = set(pred) | {0}
    precision = true_positives(sorted(t), sorted(x), margin) / len(x)
    recall = true_positives(sorted(t), sorted(x), margin) / len(t)
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def _segments(cps: Sequence[int], n: int) -> list[tuple[int, int]]:
    bounds = sorted({c for c in cps if 0 < c < n} | {0})
    return list(zip(bounds, [*bounds[1:], n], strict=True))


def covering(truth: Sequence[int], pred: Sequence[int], n: int) -> float:
    """Sum over annotated segments of |A| * max Jaccard(A, A'), over n."""
    predicted = _segments(pred, n)
    total = 0.0
    for a0, a1 in _segments(truth, n):
        best = 0.0
        for b0, b1 in predicted:
            inter = min(a1, b1) - max(a0, b0)
            if inter > 0:
                best = max(best, inter / (max(a1, b1) - min(a0, b0)))
        total += (a1 - a0) * best
    return total / n


# -- series ------------------------------------------------------------------------------


@dataclass
class Case:
    group: str
    name: str
    values: list[float]
    cps: list[int]
    real: bool = False
    step: float = 1.0  # seconds between points (the detector reads event times)


@dataclass
class Gen:
    rng: np.random.Generator
    cases: list[Case] = field(default_factory=list)

    def positions(self, n: int, k: int, gap: int = 60) -> list[int]:
        """k change positions at least `gap` apart and from both ends."""
        while True:
            cps = sorted(int(c) for c in self.rng.integers(gap, n - gap, k))
            if all(b - a >= gap for a, b in itertools.pairwise(cps)):
                return cps

    def steps(self, n: int, cps: list[int], sizes: Sequence[float]) -> Array:
        level = np.zeros(n)
        for c, size in zip(cps, sizes, strict=True):
            level[c:] += size
        return level

    def sizes(self, k: int, lo: float, hi: float) -> list[float]:
        return [float(s) for s in self.rng.uniform(lo, hi, k) * self.rng.choice([-1, 1], k)]

    def noise(self, kind: str, n: int) -> Array:
        """Unit-variance noise of one kind."""
        rng = self.rng
        if kind == "gauss":
            return rng.normal(0.0, 1.0, n)
        if kind == "t3":
            return rng.standard_t(3, n) / math.sqrt(3.0)
        if kind == "laplace":
            return rng.laplace(0.0, 1.0 / math.sqrt(2.0), n)
        if kind == "uniform":
            return rng.uniform(-math.sqrt(3.0), math.sqrt(3.0), n)
        if kind.startswith("ar"):
            rho = float(kind[2:])
            e = rng.normal(0.0, math.sqrt(1.0 - rho * rho), n)
            out = np.empty(n)
            out[0] = rng.normal()
            for i in range(1, n):
                out[i] = rho * out[i - 1] + e[i]
            return out
        raise ValueError(kind)

    def add(self, group: str, name: str, values: Array, cps: list[int], step: float = 1.0) -> None:
        self.cases.append(Case(group, name, [float(v) for v in values], cps, step=step))


def synthetic(seed: int = EVAL_SEED) -> list[Case]:
    g = Gen(np.random.default_rng(seed))
    rng = g.rng
    for i in range(8):
        n = int(rng.integers(300, 800))
        k = int(rng.integers(1, 4))
        cps = g.positions(n, k)
        xs = g.steps(n, cps, g.sizes(k, 2, 6)) + g.noise("gauss", n)
        g.add("level shift", f"shift{i}", xs, cps)
    for i in range(8):
        n = int(rng.integers(300, 800))
        k = int(rng.integers(1, 3))
        cps = g.positions(n, k, gap=100)
        slope = np.zeros(n)
        slope[0] = float(rng.normal(0.0, 0.02))
        for c, d in zip(cps, g.sizes(k, 0.05, 0.2), strict=True):
            slope[c] += d
        trend = np.concatenate([[0.0], np.cumsum(np.cumsum(slope))[:-1]])
        g.add("trend change", f"trend{i}", trend + g.noise("gauss", n), cps)
    for i, (sd, level) in enumerate([(0.01, 1.0), (10.0, 0.0), (1000.0, 1e6), (0.5, -40.0)]):
        n = int(rng.integers(300, 800))
        k = int(rng.integers(1, 4))
        cps = g.positions(n, k)
        xs = level + sd * (g.steps(n, cps, g.sizes(k, 2, 6)) + g.noise("gauss", n))
        g.add("noise scale", f"scale{i}", xs, cps)
    for i, kind in enumerate(["t3", "laplace", "uniform", "t3", "laplace", "uniform"]):
        n = int(rng.integers(300, 800))
        k = int(rng.integers(1, 4))
        cps = g.positions(n, k)
        xs = g.steps(n, cps, g.sizes(k, 2, 6)) + g.noise(kind, n)
        g.add("noise type", f"{kind}_{i}", xs, cps)
    for i, kind in enumerate(["ar0.5", "ar0.5", "ar0.5", "ar0.8", "ar0.8", "ar0.8"]):
        n = int(rng.integers(300, 800))
        k = int(rng.integers(1, 4))
        cps = g.positions(n, k)
        xs = g.steps(n, cps, g.sizes(k, 3, 6)) + g.noise(kind, n)
        g.add("AR(1) noise", f"{kind}_{i}", xs, cps)
    for i in range(6):
        n = int(rng.integers(300, 800))
        k = int(rng.integers(1, 3))
        cps = g.positions(n, k)
        xs = g.steps(n, cps, g.sizes(k, 2, 6)) + g.noise("gauss", n)
        spikes = rng.choice(n, max(2, n // 100), replace=False)
        xs[spikes] += g.sizes(len(spikes), 5, 15)
        g.add("spikes", f"spikes{i}", xs, cps)
    for i, kind in enumerate(["gauss", "gauss", "t3", "ar0.5", "spikes", "trend"]):
        n = int(rng.integers(500, 1500))
        if kind == "spikes":
            xs = g.noise("gauss", n)
            spikes = rng.choice(n, n // 50, replace=False)
            xs[spikes] += g.sizes(len(spikes), 5, 15)
        elif kind == "trend":
            xs = 0.02 * np.arange(n) + g.noise("gauss", n)
        else:
            xs = g.noise(kind, n)
        g.add("no change", f"none_{kind}{i}", 50.0 + xs, [])
    for i in range(4):
        n = int(rng.integers(300, 800))
        k = int(rng.integers(1, 3))
        cps = g.positions(n, k)
        spread = np.ones(n)
        for j, c in enumerate(cps):
            spread[c:] = 3.0 if j % 2 == 0 else 1.0
        g.add("variance change", f"var{i}", 10.0 + spread * g.noise("gauss", n), cps)
    for i in range(8):  # hourly points under a daily cycle of 5 to 10 noise sds
        n = int(rng.integers(24 * 21, 24 * 42))
        hours = np.arange(n)
        cycle = rng.uniform(5, 10) * np.sin(2 * np.pi * (hours + rng.uniform(0, 24)) / 24)
        k = int(rng.integers(0, 3)) if i >= 2 else 0
        cps = g.positions(n, k, gap=24 * 4) if k else []
        xs = 50.0 + cycle + g.steps(n, cps, g.sizes(k, 2, 6)) + g.noise("gauss", n)
        g.add("daily cycle", f"daily{i}", xs, cps, step=3600.0)
    return g.cases


def _sktime_data() -> Path | None:
    spec = importlib.util.find_spec("sktime")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def real() -> tuple[list[Case], list[str]]:
    cases: list[Case] = []
    notes: list[str] = []
    from statsmodels.datasets import nile

    frame = nile.load().data
    years = [int(y) for y in frame["year"]]
    cases.append(
        Case("real", "nile", [float(v) for v in frame["volume"]], [years.index(1898)], True)
    )
    data = _sktime_data()
    if data is None:
        notes.append("sktime not installed: seatbelts and TSSB series skipped")
        return cases, notes
    with (data / "seatbelts" / "seatbelts.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    values = [float(r["KSI"]) for r in rows]
    law = [i for i, r in enumerate(rows) if r["label"] == "1"]
    cases.append(Case("real", "seatbelts", values, law, True))
    # change points as in sktime.datasets.load_{gun_point,electric_devices}_segmentation
    for name, cps in (("GunPoint", [900]), ("ElectricDevices", [1090, 4436, 5712, 7923])):
        with (data / "segmentation" / f"{name}.csv").open(newline="") as handle:
            values = [float(r[1]) for r in csv.reader(handle)]
        cases.append(Case("real", f"tssb_{name}", values, cps, True))
    return cases, notes


# -- methods -----------------------------------------------------------------------------


def run_changepoint(values: Sequence[float], step: float, season: str = "auto") -> list[int]:
    detector = ChangePointDetector(ChangePointParams(season=season))  # type: ignore[arg-type]
    found = []
    for i, x in enumerate(values):
        verdict = detector.update(i * step, x)
        if verdict is not None and verdict.changepoint_at is not None:
            found.append(round(verdict.changepoint_at / step))
    return found


def run_changepoint_raw(values: Sequence[float], step: float) -> list[int]:
    """The same detector with `season: none`: the test on the raw points."""
    return run_changepoint(values, step, season="none")


def _river(make: Callable[[], Any]) -> Callable[[Sequence[float], float], list[int]]:
    def run(values: Sequence[float], step: float) -> list[int]:
        detector = make()
        found = []
        for i, x in enumerate(values):
            detector.update(x)
            if detector.drift_detected:
                found.append(i)
        return found

    return run


def run_none(values: Sequence[float], step: float) -> list[int]:
    return []


METHODS: dict[str, Callable[[Sequence[float], float], list[int]]] = {
    "changepoint": run_changepoint,
    "season none": run_changepoint_raw,
    "no change": run_none,
    "ADWIN": _river(ADWIN),
    "PageHinkley": _river(PageHinkley),
}


def _score(job: tuple[Case, int]) -> tuple[str, dict[str, tuple[float, float, int]]]:
    case, margin = job
    out = {}
    for name, method in METHODS.items():
        pred = method(case.values, case.step)
        out[name] = (
            f_measure(case.cps, pred, margin),
            covering(case.cps, pred, len(case.values)),
            len(pred),
        )
    return case.name, out


def evaluate(margin: int, jobs: int) -> None:
    cases = synthetic()
    real_cases, notes = real()
    cases += real_cases
    with ProcessPoolExecutor(jobs) as pool:
        results = dict(pool.map(_score, [(c, margin) for c in cases]))
    names = list(METHODS)
    head = f"{'group':<22} {'series':>6} {'changes':>7}"
    for name in names:
        head += f" | {name[:11]:>11} F1  cover"
    print(f"F1 margin {margin}; one row per group: mean over its series")
    print(head)

    def row(label: str, subset: list[Case]) -> dict[str, tuple[float, float]]:
        line = f"{label:<22} {len(subset):>6} {sum(len(c.cps) for c in subset):>7}"
        means = {}
        for name in names:
            f1 = float(np.mean([results[c.name][name][0] for c in subset]))
            cover = float(np.mean([results[c.name][name][1] for c in subset]))
            means[name] = (f1, cover)
            line += f" | {'':>7}{f1:.3f}  {cover:.3f}"
        print(line)
        return means

    groups = list(dict.fromkeys(c.group for c in cases if not c.real))
    for group in groups:
        row(group, [c for c in cases if c.group == group and not c.real])
    for case in (c for c in cases if c.real):
        row(case.name, [case])
    print("-" * len(head))
    row("synthetic", [c for c in cases if not c.real])
    if real_cases:
        row("real", real_cases)
    total = row("all", cases)
    for note in notes:
        print(f"note: {note}")
    counts = {
        name: sum(results[c.name][name][2] for c in cases) for name in names if name != "no change"
    }
    print(
        "changes reported in total: "
        + ", ".join(f"{name} {count}" for name, count in counts.items())
        + f" (annotated: {sum(len(c.cps) for c in cases)})"
    )
    f1, cover = total["changepoint"]
    f1_none, cover_none = total["no change"]
    print(
        f"changepoint F1 {f1:.3f} cover {cover:.3f} | no change F1 {f1_none:.3f} "
        f"cover {cover_none:.3f}"
    )


# -- calibration on pure noise -------------------------------------------------------------


def _null_statistics(job: tuple[int, int, str, bool]) -> Array:
    """The scan statistic at every point of one noise series, with alarms switched off."""
    seed, length, kind, trend = job
    g = Gen(np.random.default_rng(seed))
    xs = g.noise(kind, length)
    detector = ChangePointDetector(ChangePointParams(trend=trend))
    detector.threshold = math.inf
    stats = np.empty(length)
    for i, x in enumerate(xs.tolist()):
        detector.update(float(i), x)
        stats[i] = detector.last_statistic
    return stats


def _alarms(job: tuple[int, int, str, dict[str, Any]]) -> int:
    seed, length, kind, params = job
    g = Gen(np.random.default_rng(seed))
    xs = g.noise(kind, length)
    detector = ChangePointDetector(ChangePointParams(**params))
    return sum(
        1
        for i, x in enumerate(xs.tolist())
        if (v := detector.update(float(i), x)) is not None and v.anomalous
    )


def _fit(x: Array, y: Array) -> tuple[float, float, float]:
    design = np.c_[x, np.log(x), np.ones_like(x)]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


def calibrate(replicates: int, length: int, jobs: int, cache: Path | None) -> None:
    window = ChangePointParams().window
    for trend in (True, False):
        stored = None if cache is None else cache / f"null-{trend}-{replicates}x{length}.npy"
        if stored is not None and stored.exists():
            paths = list(np.load(stored))
        else:
            seeds = [CALIBRATION_SEED + (0 if trend else 10_000) + r for r in range(replicates)]
            jobs_ = [(s, length, "gauss", trend) for s in seeds]
            with ProcessPoolExecutor(jobs) as pool:
                paths = list(pool.map(_null_statistics, jobs_))
            if stored is not None:
                np.save(stored, np.asarray(paths))
        # steady state: once the window is full the statistic depends on the last `window`
        # points only; exceedances less than a window apart are one alarm
        steady = [p[2 * window :] for p in paths]
        points = sum(len(p) for p in steady)
        grid = np.arange(6.0, 45.0, 0.25)
        arl, used = [], []
        for h in grid:
            clusters = 0
            for path in steady:
                above = np.flatnonzero(path > h)
                if above.size:
                    clusters += 1 + int(np.count_nonzero(np.diff(above) >= window))
            if clusters >= 30:
                arl.append(points / clusters)
                used.append(h)
        h_fit, arl_fit = np.asarray(used), np.asarray(arl)
        # at low h the exceedances merge into few long clusters: fit where ARL rises with h
        rising = np.arange(len(arl_fit)) > int(np.argmin(arl_fit))
        keep = rising & (arl_fit >= MIN_FIT_ARL)
        a, b, c = _fit(h_fit[keep], np.log(arl_fit[keep]))
        pooled = np.concatenate(steady)
        s_grid = np.arange(2.0, 40.0, 0.25)
        tail = np.array([np.mean(pooled >= s) for s in s_grid])
        ok = tail * pooled.size >= 30
        ta, tb, tc = _fit(s_grid[ok], np.log(tail[ok]))
        print(f"trend={trend}: {replicates} x {length} white Gaussian points")
        print(f"  ARL fitted on h in [{h_fit[keep][0]:.2f}, {h_fit[keep][-1]:.2f}]")
        print(f"  _ARL[{trend}] = ({a:.4f}, {b:.4f}, {c:.4f}, {h_fit[keep][0]:.2f})")
        hk, ak = h_fit[keep], arl_fit[keep]
        worst = np.max(np.abs(a * hk + b * np.log(hk) + c - np.log(ak)))
        print(f"  largest |ln ARL| misfit {worst:.3f}")
        every = max(1, len(hk) // 8)
        for h, value in list(zip(hk, ak, strict=True))[::every]:
            print(f"    h {h:6.2f}  ARL {value:10.0f}")
        print(f"  tail fitted on s in [{s_grid[ok][0]:.2f}, {s_grid[ok][-1]:.2f}]")
        print(f"  _TAIL[{trend}] = ({ta:.4f}, {tb:.4f}, {tc:.4f})")


def check_run_lengths(replicates: int, length: int, jobs: int) -> None:
    """Realised points per alarm on series without change, restarts included."""
    settings: list[tuple[str, dict[str, Any]]] = [
        ("gauss", {}),
        ("gauss", {"arl": 1000.0}),
        ("gauss", {"trend": False}),
        ("gauss", {"window": 50}),
        ("gauss", {"window": 1000}),
        ("t3", {}),
        ("laplace", {}),
        ("uniform", {}),
        ("ar0.5", {}),
        ("ar0.8", {}),
    ]
    print(f"realised points per false alarm ({replicates} x {length} points each)")
    with ProcessPoolExecutor(jobs) as pool:
        for kind, params in settings:
            seeds = [CALIBRATION_SEED + 50_000 + r for r in range(replicates)]
            alarms = sum(pool.map(_alarms, [(s, length, kind, params) for s in seeds]))
            wanted = params.get("arl", ChangePointParams().arl)
            got = replicates * length / alarms if alarms else math.inf
            print(f"  {kind:<8} {params!s:<22} wanted {wanted:>8.0f}  got {got:>9.0f}", end="")
            print(f" ({alarms} alarms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--margin", type=int, default=5)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--check", action="store_true", help="realised false-alarm rates")
    parser.add_argument("--replicates", type=int, default=24)
    parser.add_argument("--length", type=int, default=100_000)
    parser.add_argument("--cache", type=Path, help="folder to keep the noise statistics in")
    args = parser.parse_args()
    if args.calibrate:
        calibrate(args.replicates, args.length, args.jobs, args.cache)
        return
    if args.check:
        check_run_lengths(args.replicates, args.length // 2, args.jobs)
        return
    evaluate(args.margin, args.jobs)


if __name__ == "__main__":
    main()
