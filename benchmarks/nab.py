"""Score a lupus-stream detector on the Numenta Anomaly Benchmark (NAB v1.1), online.

    python benchmarks/nab.py [--data DIR] [--detector KIND] [--set k=v ...] [--jobs N]
                             [--save-scores DIR] [--scores-from DIR] [--self-check]

`--data` is a NAB folder holding `data/<category>/<name>.csv`,
`labels/combined_windows.json` and `profiles.json` (default: `shared/bench/nab` next to
the repository). Every file listed in the windows file is run through
`lupus_stream.backtest.backtest`, which feeds the points one by one through the streaming
engine: the detector never sees a file's future, length or range. `--detector` defaults
to what a metric monitor gets (`registry.DEFAULT_KIND["series"]`), with its default
parameters unless `--set key=value` (values read as YAML) says otherwise. Files run in
`--jobs` processes.

The per-row scores are then scored as NAB does (`lupus_stream.evaluation.nab`): one
threshold per profile, optimised over all files, raw scores normalised between the null
detector (0) and the perfect one (100). The script prints, for the `standard`,
`reward_low_FP_rate` and `reward_low_FN_rate` profiles, the chosen threshold and the
per-category and total scores, then a summary; the LAST line is the standard total
normalised score alone (e.g. `63.12`).

Scores over a subset of NAB's 58 files (such as the 41-file development split) are not
comparable with NAB's published scoreboard: threshold and normalisation depend on the
file set.

* `--save-scores DIR` writes each file's scores to `DIR/<category>/<name>.csv`
  (`timestamp,value,anomaly_score,changepoint`).
* `--scores-from DIR` skips the detector and scores existing outputs instead: the
  `anomaly_score` column of `DIR/<category>/<name>.csv` or NAB's own layout
  `DIR/<category>/<detector>_<name>.csv`, matched to data rows by position.
* `--self-check` checks the scorer against what can be checked without detector outputs
  (the worked example of the specification, published normalisations, the null and
  perfect detectors and the split's constants on the data) and exits.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lupus_stream.backtest import backtest, write_scores
from lupus_stream.detection import registry
from lupus_stream.evaluation import nab

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/bench/nab"
REPORTED = nab.PROFILES  # standard, reward_low_FP_rate, reward_low_FN_rate


def _param(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"--set {item!r}: expected key=value")
    return key.strip(), yaml.safe_load(value)


Job = tuple[str, Path, str, dict[str, Any], Path | None]


def _run_one(job: Job) -> tuple[str, list[float], list[str], float]:
    key, path, kind, params, save = job
    start = time.perf_counter()
    result = backtest(path, kind, params)
    if save is not None:
        write_scores(result, save / key)
    return key, [r.score for r in result.rows], result.errors, time.perf_counter() - start


def _read_scores(folder: Path, key: str) -> list[float]:
    category, _, name = key.partition("/")
    path = folder / key
    if not path.exists():
        found = sorted((folder / category).glob(f"*_{name}"))
        if len(found) != 1:
            raise FileNotFoundError(f"no single score file for {key} in {folder}")
        path = found[0]
    with path.open(newline="", encoding="utf-8") as handle:
        return [float(row["anomaly_score"]) for row in csv.DictReader(handle)]


def _timestamps(data: Path, windows: Mapping[str, object]) -> dict[str, list[Any]]:
    return {key: nab.read_timestamps(data / "data" / key) for key in windows}


def _corpus(
    stamps: Mapping[str, list[Any]],
    windows: Mapping[str, list[Any]],
    scores: Mapping[str, Any],
) -> dict[str, nab.FileData]:
    corpus: dict[str, nab.FileData] = {}
    for key, ts in stamps.items():
        s = scores[key]
        if len(s) != len(ts):
            raise SystemExit(f"{key}: {len(s)} scores for {len(ts)} rows")
        corpus[key] = nab.file_data(s, nab.window_rows(ts, windows[key]))
    return corpus


def _fmt(x: float | None, width: int = 8) -> str:
    return f"{x:{width}.2f}" if x is not None else f"{'n/a':>{width}}"


def _report(results: Mapping[str, nab.ProfileResult], corpus: Mapping[str, nab.FileData]) -> None:
    for name in REPORTED:
        res = results[name]
        p = res.profile
        print(
            f"\n== {name} (A_TP={p.tp:g}, A_FP={p.fp:g}, A_FN={p.fn:g}): "
            f"threshold {res.threshold.threshold:.6f}, "
            f"null detector's {res.null_threshold.threshold:g}"
        )
        if res.threshold.threshold == nab.NO_DETECTION:
            # no threshold beats staying silent: say how far the best one is
            active = nab.sweep(corpus, p)[1:]
            if active:
                top = max(active, key=lambda t: t.score)
                score = nab.normalise(top.score, res.total.null, res.total.perfect)
                print(
                    f"  no threshold beats no detection; best with detections: "
                    f"{top.threshold:.6f} -> raw {top.score:.2f}, normalised {score:.2f}"
                )
        print(
            f"  {'category':<24}{'files':>6}{'windows':>8}{'raw':>10}{'null':>9}{'perfect':>9}"
            f"{'score':>9}{'TP':>7}{'FP':>7}{'FN':>7}{'TN':>8}"
        )
        rows = [*sorted(res.categories.items()), ("TOTAL", res.total)]
        for label, g in rows:
            print(
                f"  {label:<24}{g.files:>6}{g.windows:>8}{g.raw:>10.4f}{g.null:>9.2f}"
                f"{g.perfect:>9.2f}{_fmt(g.normalised, 9)}{g.tp:>7}{g.fp:>7}{g.fn:>7}{g.tn:>8}"
            )


# -- self-check ---------------------------------------------------------------------------


def _self_check(data: Path) -> bool:
    failures: list[str] = []

    def check(label: str, ok: bool, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {label}{': ' + detail if detail else ''}")
        if not ok:
            failures.append(label)

    def close(a: float, b: float, tol: float) -> bool:
        return math.isclose(a, b, rel_tol=0.0, abs_tol=tol)

    # 1. profiles.json holds the weights of the specification
    profiles = nab.load_profiles(data / "profiles.json")
    for ref in (nab.STANDARD, nab.REWARD_LOW_FP, nab.REWARD_LOW_FN):
        check(
            f"profiles.json {ref.name}", profiles.get(ref.name) == ref, str(profiles.get(ref.name))
        )

    # 2. the worked example of SCORING.md section 8
    s = np.full(40, 0.1)
    s[[2, 10, 22, 25, 30, 36]] = [1.0, 0.9, 0.8, 0.95, 0.7, 0.6]
    toy = {"toy/toy.csv": nab.file_data(s, [(20, 27)])}
    w = nab.row_weights(40, [(20, 27)], nab.STANDARD)
    want_w = [-0.11, 1.0, 0.9669890878, 0.7440308953, 0.3068166860, -0.0376964398,
              -0.0868998713, -0.1096453264]  # fmt: skip
    got_w = [float(w[i]) for i in (10, 20, 22, 25, 27, 28, 30, 36)]
    check(
        "worked example: weights",
        all(close(a, b, 5e-11) for a, b in zip(got_w, want_w, strict=True)),
    )
    sweeps = {
        "standard": [-1.0, 0.7440308953, 0.6340308953, 0.8569890878, 0.7700892165,
                     0.6604438901, -1.6982625480],
        "reward_low_FP_rate": [-1.0, 0.7440308953, 0.5240308953, 0.7469890878, 0.5731893452,
                               0.3538986924, -4.3965250960],
        "reward_low_FN_rate": [-2.0, 0.7440308953, 0.6340308953, 0.8569890878, 0.7700892165,
                               0.6604438901, -1.6982625480],
    }  # fmt: skip
    for name, want in sweeps.items():
        points = nab.sweep(toy, profiles[name])
        ok = [p.threshold for p in points] == [1.1, 0.95, 0.9, 0.8, 0.7, 0.6, 0.1] and all(
            close(p.score, v, 5e-11) for p, v in zip(points, want, strict=False)
        )
        best = nab.optimise_threshold(toy, profiles[name])
        check(f"worked example: sweep {name}", ok and best.threshold == 0.8, f"best {best}")

    # 3. published normalisation (SCORING.md section 9, final_results.json): numenta's raw
    # corpus scores map onto its published normalised scores with the full-corpus constants
    final = json.loads((data / "final_results.json").read_text(encoding="utf-8"))
    numenta_raw = {"standard": 46.6344501971, "reward_low_FP_rate": 30.4310725171,
                   "reward_low_FN_rate": 26.6344501971}  # fmt: skip
    for name, raw in numenta_raw.items():
        p = profiles[name]
        got = nab.normalise(raw, -p.fn * 116, p.tp * 116)
        pub = final["numenta"][name]
        check(f"published numenta {name}", close(got, pub, 1e-8), f"{got:.10f} vs {pub:.10f}")
    check(
        "published null detector is 0",
        all(v == 0.0 for v in final["null"].values()),
        str(final["null"]),
    )

    # 4. the development split: counts of the README, windows after probation
    windows = nab.load_windows(data / "labels" / "combined_windows.json")
    stamps = _timestamps(data, windows)
    on_disk = {str(p.relative_to(data / "data")) for p in (data / "data").glob("*/*.csv")}
    check("every data file is in the windows file", on_disk == set(windows), f"{len(on_disk)}")
    readme = {  # category: (files, rows, windows)
        "artificialNoAnomaly": (5, 20_160, 0),
        "artificialWithAnomaly": (6, 24_192, 6),
        "realAWSCloudwatch": (17, 67_740, 30),
        "realAdExchange": (6, 9_610, 14),
        "realTraffic": (7, 15_664, 14),
    }
    counts: dict[str, list[int]] = {}
    late = True
    for key, ts in stamps.items():
        c = counts.setdefault(nab.category_of(key), [0, 0, 0])
        c[0] += 1
        c[1] += len(ts)
        c[2] += len(windows[key])
        rows = nab.window_rows(ts, windows[key])
        late &= all(first >= nab.probation_length(len(ts)) for first, _ in rows)
    check("split counts (files, rows, windows)", counts == {k: list(v) for k, v in readme.items()})
    check("every window starts after probation", late)

    # 5. null and perfect detectors on the data; the split's constants S_perfect, S_null
    null = _corpus(stamps, windows, {k: nab.null_scores(len(t)) for k, t in stamps.items()})
    perfect = _corpus(
        stamps,
        windows,
        {k: nab.perfect_scores(d.rows, d.windows) for k, d in null.items()},
    )
    constants = {"standard": (64, -64), "reward_low_FP_rate": (64, -64),
                 "reward_low_FN_rate": (64, -128)}  # fmt: skip
    for name, (s_perfect, s_null) in constants.items():
        n = nab.evaluate_profile(null, profiles[name])
        pf = nab.evaluate_profile(perfect, profiles[name])
        check(
            f"null detector {name}",
            n.total.normalised == 0.0 and n.total.raw == s_null and n.total.null == s_null,
            f"raw {n.total.raw}, threshold {n.threshold.threshold}",
        )
        check(
            f"perfect detector {name}",
            pf.total.perfect == s_perfect
            and pf.total.normalised is not None
            and close(pf.total.normalised, 100.0, 1e-9),
            f"raw {pf.total.raw}, threshold {pf.threshold.threshold}",
        )
    print(f"self-check: {'all passed' if not failures else f'{len(failures)} FAILED'}")
    return not failures


# -- main ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB folder")
    ap.add_argument("--detector", default=None, help="detector kind (default: the metric one)")
    ap.add_argument("--set", dest="params", type=_param, action="append", default=[],
                    metavar="KEY=VALUE", help="detector parameter (YAML value)")  # fmt: skip
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--save-scores", type=Path, default=None, metavar="DIR")
    ap.add_argument("--scores-from", type=Path, default=None, metavar="DIR")
    ap.add_argument("--self-check", action="store_true")
    args = ap.parse_args(argv)
    data: Path = args.data

    if args.self_check:
        return 0 if _self_check(data) else 1

    profiles = nab.load_profiles(data / "profiles.json")
    windows = nab.load_windows(data / "labels" / "combined_windows.json")
    t0 = time.perf_counter()
    stamps = _timestamps(data, windows)
    n_rows = sum(len(t) for t in stamps.values())
    n_win = sum(len(w) for w in windows.values())

    scores: dict[str, Any] = {}
    t1 = time.perf_counter()
    if args.scores_from is not None:
        print(f"scores from {args.scores_from}")
        scores = {k: _read_scores(args.scores_from, k) for k in windows}
        busy = 0.0
    else:
        kind: str = args.detector or registry.DEFAULT_KIND["series"]
        params: dict[str, Any] = dict(args.params)
        try:
            registry.validate(kind, params, "series")
        except registry.DetectorConfigError as exc:
            print(f"invalid detector settings: {exc}", file=sys.stderr)
            return 2
        print(f"detector {kind} {json.dumps(params, default=str)} (online, one point at a time)")
        # the largest files first, so that the processes finish together
        jobs = [
            (k, data / "data" / k, kind, params, args.save_scores)
            for k in sorted(stamps, key=lambda k: -len(stamps[k]))
        ]
        run: Callable[..., Any] = map
        pool = ProcessPoolExecutor(args.jobs) if args.jobs > 1 else None
        if pool is not None:
            run = pool.map
        busy = 0.0
        try:
            for key, s, errors, seconds in run(_run_one, jobs):
                scores[key] = s
                busy += seconds
                for message in errors[:3]:
                    print(f"  skipped: {message}", file=sys.stderr)
        finally:
            if pool is not None:
                pool.shutdown()
    t2 = time.perf_counter()
    corpus = _corpus(stamps, windows, scores)
    results = nab.evaluate(corpus, [profiles[name] for name in REPORTED])
    t3 = time.perf_counter()

    print(
        f"{len(corpus)} files, {n_rows} rows, {n_win} windows in {data}\n"
        f"time: detector {t2 - t1:.1f} s wall ({busy:.1f} s in {args.jobs} process(es)), "
        f"reading {t1 - t0:.1f} s, scoring {t3 - t2:.1f} s"
    )
    _report(results, corpus)
    print(
        "\nthresholds: " + ", ".join(f"{n} {results[n].threshold.threshold:.6f}" for n in REPORTED)
    )
    print(
        "normalised: " + ", ".join(f"{n} {_fmt(results[n].total.normalised, 0)}" for n in REPORTED)
    )
    standard = results["standard"].total.normalised
    print(_fmt(standard, 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
