"""Numenta Anomaly Benchmark (NAB v1.1) scoring, written from a specification of it.

A detector gives every row of every data file an anomaly score in [0, 1]. NAB scores it
against labelled anomaly *windows* (runs of rows, both ends included), one profile at a
time; a profile weighs true positives, false positives and missed windows (`A_TP`,
`A_FP`, `A_FN`; the true-negative weight is never used).

* **Probation**: the first `P = min(floor(0.15 n), 750)` rows of an `n`-row file are
  not scored (neither TP, FP nor FN); they still count when looking for the window that
  precedes a row. A window lying wholly inside probation is dropped.
* **Row weight** (scaled sigmoid `σ(y) = 2 / (1 + e^(5y)) - 1`, `-1` for `y > 3`, with
  `σ_max = σ(-1)`): a row `i` of a window `[l, r]` of width `W` is worth
  `A_TP σ(-(r - i + 1) / W) / σ_max` (exactly `A_TP` at the first row); a row outside
  every window is worth `-A_FP` before the first window has ended, else
  `A_FP σ((i - r') / (W' - 1))`, `[l', r']` being the last window with `r' < i`.
* **File score** at threshold `θ` (a detection is a scorable row with `s >= θ`): each
  window with a scorable row adds the largest weight of its detected rows, or `-A_FN` if
  none was detected; every detection outside the windows adds its own (negative) weight.
* **Threshold**: one per detector and profile for the whole corpus, the candidate (1.1 =
  no detection, or any score value of a scorable row) with the highest corpus score; ties
  go to the highest threshold.
* **Normalisation**: `100 (S - S_null) / (S_perfect - S_null)`, with `S_perfect` = number
  of windows times `A_TP` and `S_null` the corpus score of the null detector (constant
  0.5) at its own optimised threshold; the null detector scores 0, the perfect one 100.

Everything here is a pure function of arrays and index windows, except the small loaders
`load_profiles`, `load_windows` and `read_timestamps`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Window = tuple[int, int]

PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = 5000  # the probation never exceeds PROBATION_PERCENT of this
NO_DETECTION = 1.1  # the threshold at which nothing is detected
NULL_SCORE = 0.5  # what the null detector outputs on every row
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def scaled_sigmoid(y: float) -> float:
    """NAB's weighting curve: `2 / (1 + e^(5y)) - 1` for `y <= 3`, `-1` above.

    >>> scaled_sigmoid(0.0), scaled_sigmoid(4.0)
    (0.0, -1.0)
    """
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


SIGMA_MAX = scaled_sigmoid(-1.0)  # 0.98661429815...: the weight of a window's first row


def _sigmoid_array(y: FloatArray) -> FloatArray:
    inner = 2.0 / (1.0 + np.exp(5.0 * np.minimum(y, 3.0))) - 1.0
    out: FloatArray = np.where(y > 3.0, -1.0, inner)
    return out


@dataclass(frozen=True)
class Profile:
    """The weights of one scoring profile (`tnWeight` is never used by NAB)."""

    name: str
    tp: float
    fp: float
    fn: float


STANDARD = Profile("standard", 1.0, 0.11, 1.0)
REWARD_LOW_FP = Profile("reward_low_FP_rate", 1.0, 0.22, 1.0)
REWARD_LOW_FN = Profile("reward_low_FN_rate", 1.0, 0.11, 2.0)


@dataclass(frozen=True)
class FileData:
    """One file: a score per row in file order, and its windows as `(first, last)` rows.

    Build it with `file_data`, which checks the scores and the windows.
    """

    scores: FloatArray
    windows: tuple[Window, ...]

    @property
    def rows(self) -> int:
        return int(self.scores.size)


def file_data(scores: Sequence[float] | FloatArray, windows: Iterable[Window]) -> FileData:
    """Check and pack one file's scores (finite, in [0, 1]) and windows (sorted, disjoint,
    inside the file, first <= last)."""
    array = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError("anomaly scores must be finite")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError("anomaly scores must lie in [0, 1]")
    wins = tuple((int(a), int(b)) for a, b in windows)
    previous = -1
    for first, last in wins:
        if not 0 <= first <= last < array.size:
            raise ValueError(f"window {(first, last)} outside rows 0..{array.size - 1}")
        if first <= previous:
            raise ValueError(f"window {(first, last)} overlaps or precedes the one before")
        previous = last
    return FileData(array, wins)


def category_of(key: str) -> str:
    """`"realTraffic/speed_6005.csv"` -> `"realTraffic"` (empty for a key without one)."""
    head, sep, _ = key.partition("/")
    return head if sep else ""


def probation_length(rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that are not scored: `min(floor(p n), p 5000)`."""
    return int(min(math.floor(percent * rows), percent * PROBATION_CAP_ROWS))


def window_ids(rows: int, windows: Sequence[Window]) -> IntArray:
    """Index of the window holding each row, -1 for rows outside every window."""
    ids: IntArray = np.full(rows, -1, dtype=np.int64)
    for k, (first, last) in enumerate(windows):
        ids[first : last + 1] = k
    return ids


def row_weights(rows: int, windows: Sequence[Window], profile: Profile) -> FloatArray:
    """The weight a detection would get on each row (probation is not applied here).

    Raises ValueError if rows follow a window of width 1 (NAB divides by `W - 1`).
    """
    weights: FloatArray = np.full(rows, -profile.fp, dtype=np.float64)
    index = np.arange(rows, dtype=np.float64)
    for k, (first, last) in enumerate(windows):
        width = last - first + 1
        y_in = -(last - index[first : last + 1] + 1.0) / width
        weights[first : last + 1] = profile.tp * _sigmoid_array(y_in) / SIGMA_MAX
        stop = windows[k + 1][0] if k + 1 < len(windows) else rows
        if stop > last + 1:
            if width == 1:
                raise ValueError(f"window {(first, last)} has one row; rows after it")
            y_out = (index[last + 1 : stop] - last) / (width - 1)
            weights[last + 1 : stop] = profile.fp * _sigmoid_array(y_out)
    return weights


@dataclass(frozen=True)
class FileScore:
    """A file's raw score at one threshold, with NAB's row counts over scorable rows."""

    score: float
    tp: int
    fp: int
    fn: int
    tn: int
    windows: int  # windows with at least one scorable row
    detected_windows: int


def score_file(
    data: FileData,
    profile: Profile,
    threshold: float,
    probation_percent: float = PROBATION_PERCENT,
) -> FileScore:
    """Raw NAB score of one file when every scorable row with `score >= threshold` fires."""
    rows = data.rows
    start = probation_length(rows, probation_percent)
    weights = row_weights(rows, data.windows, profile)
    detected = data.scores >= threshold
    detected[:start] = False
    total = 0.0
    live = found = 0
    for first, last in data.windows:
        lo = max(first, start)
        if lo > last:
            continue  # wholly inside probation: dropped
        live += 1
        hit = detected[lo : last + 1]
        if hit.any():
            found += 1
            total += float(weights[lo : last + 1][hit].max())
        else:
            total -= profile.fn
    outside = window_ids(rows, data.windows) < 0
    outside[:start] = False
    false_pos = outside & detected
    total += float(weights[false_pos].sum())
    inside = ~outside
    inside[:start] = False
    tp = int((inside & detected).sum())
    fp = int(false_pos.sum())
    return FileScore(
        score=total,
        tp=tp,
        fp=fp,
        fn=int(inside.sum()) - tp,
        tn=int(outside.sum()) - fp,
        windows=live,
        detected_windows=found,
    )


@dataclass(frozen=True)
class Threshold:
    """The corpus-wide threshold chosen for one profile and the corpus raw score there."""

    threshold: float
    score: float


def sweep(
    corpus: Mapping[str, FileData],
    profile: Profile,
    probation_percent: float = PROBATION_PERCENT,
) -> list[Threshold]:
    """Corpus raw score at every candidate threshold, highest threshold first.

    Candidates: 1.1 (no detection) and each distinct score of a scorable row. The rows of
    all files are pooled and added in descending score order; each window holds `-A_FN`
    until its first detection, then the largest weight detected in it.
    """
    scores: list[FloatArray] = []
    weights: list[FloatArray] = []
    ids: list[IntArray] = []
    offset = 0
    for key in sorted(corpus):
        data = corpus[key]
        start = probation_length(data.rows, probation_percent)
        local = window_ids(data.rows, data.windows)
        scores.append(data.scores[start:])
        weights.append(row_weights(data.rows, data.windows, profile)[start:])
        ids.append(np.where(local >= 0, local + offset, -1)[start:])
        offset += len(data.windows)
    s_all = np.concatenate(scores) if scores else np.zeros(0)
    w_all = np.concatenate(weights) if weights else np.zeros(0)
    id_all = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
    live = np.unique(id_all[id_all >= 0])

    order = np.argsort(-s_all, kind="stable")
    s_sorted: list[float] = s_all[order].tolist()
    w_sorted: list[float] = w_all[order].tolist()
    id_sorted: list[int] = id_all[order].tolist()

    best: dict[int, float] = {}
    in_windows = -profile.fn * live.size
    outside = 0.0
    points = [Threshold(NO_DETECTION, in_windows + outside)]
    m = len(s_sorted)
    i = 0
    while i < m:
        theta = s_sorted[i]
        while i < m and s_sorted[i] == theta:
            wid, weight = id_sorted[i], w_sorted[i]
            if wid < 0:
                outside += weight
            elif wid not in best:
                best[wid] = weight
                in_windows += weight + profile.fn
            elif weight > best[wid]:
                in_windows += weight - best[wid]
                best[wid] = weight
            i += 1
        points.append(Threshold(theta, in_windows + outside))
    return points


def optimise_threshold(
    corpus: Mapping[str, FileData],
    profile: Profile,
    probation_percent: float = PROBATION_PERCENT,
) -> Threshold:
    """The candidate threshold with the highest corpus raw score (the highest on ties)."""
    chosen: Threshold | None = None
    for point in sweep(corpus, profile, probation_percent):
        if chosen is None or point.score > chosen.score:
            chosen = point
    assert chosen is not None
    return chosen


def normalise(raw: float, null: float, perfect: float) -> float:
    """`100 (raw - null) / (perfect - null)`: null -> 0, perfect -> 100."""
    return 100.0 * (raw - null) / (perfect - null)


def null_scores(rows: int) -> FloatArray:
    """The null detector's output: 0.5 on every row."""
    return np.full(rows, NULL_SCORE, dtype=np.float64)


def perfect_scores(rows: int, windows: Sequence[Window]) -> FloatArray:
    """A perfect output: 1 on the first row of each window, 0 elsewhere.

    It scores `A_TP` per window (100 normalised) as long as no window starts in probation.
    """
    out: FloatArray = np.zeros(rows, dtype=np.float64)
    for first, _ in windows:
        out[first] = 1.0
    return out


def null_corpus(corpus: Mapping[str, FileData]) -> dict[str, FileData]:
    """The same files and windows with the null detector's scores."""
    return {k: FileData(null_scores(d.rows), d.windows) for k, d in corpus.items()}


@dataclass(frozen=True)
class GroupResult:
    """Sums over a group of files (a category or the whole corpus) for one profile.

    `normalised` is None when the group has no window (perfect == null).
    """

    files: int
    windows: int
    raw: float
    null: float
    perfect: float
    normalised: float | None
    tp: int
    fp: int
    fn: int
    tn: int


@dataclass(frozen=True)
class ProfileResult:
    """One profile: the chosen thresholds, the corpus total, categories and files."""

    profile: Profile
    threshold: Threshold
    null_threshold: Threshold
    total: GroupResult
    categories: dict[str, GroupResult] = field(default_factory=dict)
    files: dict[str, FileScore] = field(default_factory=dict)


def _group(
    keys: Sequence[str],
    det: Mapping[str, FileScore],
    null: Mapping[str, FileScore],
    corpus: Mapping[str, FileData],
    profile: Profile,
) -> GroupResult:
    raw = sum(det[k].score for k in keys)
    null_raw = sum(null[k].score for k in keys)
    n_win = sum(len(corpus[k].windows) for k in keys)
    perfect = n_win * profile.tp
    return GroupResult(
        files=len(keys),
        windows=n_win,
        raw=raw,
        null=null_raw,
        perfect=perfect,
        normalised=normalise(raw, null_raw, perfect) if perfect != null_raw else None,
        tp=sum(det[k].tp for k in keys),
        fp=sum(det[k].fp for k in keys),
        fn=sum(det[k].fn for k in keys),
        tn=sum(det[k].tn for k in keys),
    )


def evaluate_profile(
    corpus: Mapping[str, FileData],
    profile: Profile,
    probation_percent: float = PROBATION_PERCENT,
) -> ProfileResult:
    """Optimise the threshold over the whole corpus, score every file there, normalise.

    Category results use the corpus threshold (and the null detector's), normalised with
    the category's own windows.
    """
    keys = sorted(corpus)
    chosen = optimise_threshold(corpus, profile, probation_percent)
    det = {k: score_file(corpus[k], profile, chosen.threshold, probation_percent) for k in keys}
    nulls = null_corpus(corpus)
    null_chosen = optimise_threshold(nulls, profile, probation_percent)
    null = {
        k: score_file(nulls[k], profile, null_chosen.threshold, probation_percent) for k in keys
    }
    by_category: dict[str, list[str]] = {}
    for k in keys:
        by_category.setdefault(category_of(k), []).append(k)
    return ProfileResult(
        profile=profile,
        threshold=chosen,
        null_threshold=null_chosen,
        total=_group(keys, det, null, corpus, profile),
        categories={c: _group(ks, det, null, corpus, profile) for c, ks in by_category.items()},
        files=det,
    )


def evaluate(
    corpus: Mapping[str, FileData],
    profiles: Iterable[Profile],
    probation_percent: float = PROBATION_PERCENT,
) -> dict[str, ProfileResult]:
    """`evaluate_profile` for each profile, keyed by profile name."""
    return {p.name: evaluate_profile(corpus, p, probation_percent) for p in profiles}


# -- loaders (the only I/O) ------------------------------------------------------------


def load_profiles(path: Path) -> dict[str, Profile]:
    """Read NAB's `profiles.json` (`{name: {"CostMatrix": {"tpWeight": ...}}}`)."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    out: dict[str, Profile] = {}
    for name, body in raw.items():
        cost = body["CostMatrix"]
        out[name] = Profile(
            name, float(cost["tpWeight"]), float(cost["fpWeight"]), float(cost["fnWeight"])
        )
    return out


def parse_timestamp(text: str) -> datetime:
    """`2014-04-01 00:05:00` or `2014-04-10 07:15:00.000000` as a naive datetime."""
    return datetime.fromisoformat(text.strip())


def load_windows(path: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """Read `combined_windows.json`: relative data path -> `[(start, end), ...]`."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {
        key: [(parse_timestamp(a), parse_timestamp(b)) for a, b in wins]
        for key, wins in raw.items()
    }


def read_timestamps(path: Path) -> list[datetime]:
    """The timestamps of a NAB data file (`timestamp,value`), in file order."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        return [parse_timestamp(cells[0]) for cells in reader if cells]


def window_rows(
    timestamps: Sequence[datetime], windows: Iterable[tuple[datetime, datetime]]
) -> list[Window]:
    """Turn timestamp windows into row windows; each end must be some row's timestamp."""
    position: dict[datetime, int] = {}
    for i, ts in enumerate(timestamps):
        position.setdefault(ts, i)
    out: list[Window] = []
    for start, end in windows:
        if start not in position or end not in position:
            raise ValueError(f"window ({start}, {end}) does not start and end on rows")
        out.append((position[start], position[end]))
    return out
