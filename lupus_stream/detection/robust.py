"""Robust baseline: how far a point is from the recent median, in MAD units.

The median and the median absolute deviation (MAD) of the last `window` normal points
ignore the outliers they are meant to find, so one spike neither hides itself nor the
next one. Points judged anomalous are kept out of the baseline. A run of `shift_after`
anomalies on the same side is not a string of outliers but a new level: the detector
says so once (kind `level_shift`, `changepoint_at` = the first point of the run) and
restarts its baseline from the points of the new regime, so it follows the new level
instead of alerting forever.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence
from typing import Annotated, Any, Self

import msgspec
import numpy as np

from lupus_stream.detection.base import Detector, Verdict, VerdictBatch

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
# Finite-sample correction of 1.4826 * MAD (Croux & Rousseeuw 1992), which underestimates
# sigma in small samples: b_n for n <= 9, n / (n - 0.8) above.
_SMALL_SAMPLE = {2: 1.196, 3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi/2): same for the mean absolute deviation
REL_FLOOR = 1e-3  # scale never below 0.1 % of |median| ...
ABS_FLOOR = 1e-9  # ... nor below this absolute value (a flat series at 0)
_SQRT2 = math.sqrt(2.0)
_BATCH_TYPES = frozenset({float, type(None)})  # values the vectorised path takes as they are
_CHUNK = 256  # points per vectorised step: bounds the work redone after an anomaly


class RobustParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Window length, robust-z threshold, warm-up length and level-shift run length."""

    window: Annotated[int, msgspec.Meta(ge=3, le=10_000)] = 28
    threshold: Annotated[float, msgspec.Meta(gt=0)] = 4.5
    min_history: Annotated[int, msgspec.Meta(ge=3)] = 7
    shift_after: Annotated[int, msgspec.Meta(ge=1)] = 3

    def __post_init__(self) -> None:
        if self.min_history > self.window:
            raise ValueError(
                f"min_history ({self.min_history}) must not exceed window ({self.window})"
            )


class RobustState(msgspec.Struct):
    """The baseline ring buffer and the current run of same-side anomalies."""

    values: list[float] = []  # ring buffer of at most `window` baseline points
    head: int = 0  # next slot to overwrite once the buffer is full (the oldest point)
    run_ts: list[float] = []  # event times of the current run of anomalies
    run_xs: list[float] = []  # their values
    run_side: int = 0  # +1 above, -1 below the baseline, 0 no run


class RobustBaselineDetector(Detector[RobustParams, RobustState]):
    """Robust z-score of each point against the median/MAD of the recent normal points.

    `z = (x - median) / scale` with `scale = 1.4826 * MAD * b_n`, where `b_n` is the
    finite-sample correction of Croux & Rousseeuw (1.14 for 7 points, 1.03 for 28). When
    the MAD is 0 (more than half the window holds one value) the scale falls back to
    `1.2533 * mean absolute deviation`, and it is never below `max(1e-9, 1e-3 * |median|)`:
    on a perfectly flat series a change smaller than `threshold * 0.1 %` of the level is
    treated as noise, while a real jump still gives a large z instead of z = x / 1e-9.

    `score = erf(|z| / sqrt(2))`, the two-sided normal probability of a smaller deviation,
    so it lies in [0, 1]. A point is anomalous when `|z| > threshold`. Until the baseline
    holds `min_history` points (at the start and after a level shift) every verdict is
    quiet with score 0. Missing points (`None` or NaN) give no verdict and do not break a
    run of anomalies.

    Calibration caveat: the score treats median and MAD as exact. They are estimated from
    at most `window` points, so on Gaussian noise `|z| > 4.5` happens about once per 1000
    points with `window=28` (about once per 100 while the window still holds 7-20 points),
    not once per 150 000. Alert policies (`for:`) should not rely on single points.

    Limitation: on a discrete series where more than half the window holds one value, a
    value rarely or never seen in the baseline stays anomalous (anomalies do not enter the
    baseline, so it cannot learn them unless they come `shift_after` in a row).

    >>> d = RobustBaselineDetector()
    >>> _ = d.update_many(range(20), [10.0, 11.0, 9.0, 10.5, 9.5] * 4)
    >>> v = d.update(20, 30.0)
    >>> v.anomalous, v.kind, v.expected
    (True, 'outlier', 10.0)
    """

    kind = "robust"
    version = 1
    Params = RobustParams
    State = RobustState
    native_batch = True

    def update(self, t: float, x: Any) -> Verdict | None:
        if x is None:
            return None
        value = float(x)
        if math.isnan(value):
            return None
        p, s = self.params, self.state
        values = s.values
        n = len(values)
        if n < p.min_history:
            self._push(value)
            return Verdict(
                0.0,
                False,
                value,
                kind="outlier",
                detail=f"warming up ({n + 1}/{p.min_history} points)",
            )

        ordered = sorted(values)
        mid = n // 2
        median = ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
        deviations = sorted([abs(v - median) for v in values])
        mad = deviations[mid] if n % 2 else 0.5 * (deviations[mid - 1] + deviations[mid])
        scale = MAD_TO_SIGMA * mad * _SMALL_SAMPLE.get(n, n / (n - 0.8))
        if scale == 0.0:
            scale = MEAN_AD_TO_SIGMA * math.fsum(deviations) / n
        scale = max(scale, ABS_FLOOR, REL_FLOOR * abs(median))

        z = (value - median) / scale
        score = math.erf(abs(z) / _SQRT2)
        band = p.threshold * scale
        lower, upper = median - band, median + band

        if abs(z) <= p.threshold:
            self._push(value)
            s.run_ts, s.run_xs, s.run_side = [], [], 0
            return Verdict(score, False, value, median, lower, upper, kind="outlier")

        side = 1 if z > 0 else -1
        if side != s.run_side:
            s.run_ts, s.run_xs, s.run_side = [], [], side
        s.run_ts.append(t)
        s.run_xs.append(value)
        if len(s.run_xs) < p.shift_after:
            return Verdict(
                score,
                True,
                value,
                median,
                lower,
                upper,
                kind="outlier",
                detail=f"robust z {z:+.1f} (threshold {p.threshold:g})",
            )

        start = s.run_ts[0]
        count = len(s.run_xs)
        s.values = s.run_xs[-p.window :]
        s.head = 0
        s.run_ts, s.run_xs, s.run_side = [], [], 0
        return Verdict(
            score,
            True,
            value,
            median,
            lower,
            upper,
            changepoint_at=start,
            kind="level_shift",
            detail=f"level shift {'up' if side > 0 else 'down'}: {count} consecutive points "
            f"beyond {p.threshold:g} robust z of {median:g}",
        )

    @classmethod
    def update_batches(
        cls,
        detectors: Sequence[Self],
        ts: Sequence[Sequence[float]],
        xs: Sequence[Sequence[Any]],
    ) -> list[VerdictBatch]:
        """Verdicts equal to `update` on each point, medians and MADs vectorised with numpy
        over the points of every detector at once.

        The vectorised path covers the steady state: a full window, no run of anomalies,
        finite points. It assumes each point of a stretch is normal (so enters the window
        of the next), computes every window of the stretch at once, and keeps the prefix
        up to the first point that is not normal; that point, and every point until the
        steady state holds again (a run of anomalies, the warm-up, a window still
        filling after a level shift, an infinite or -0.0 value), goes through `update`.
        Medians, MADs and bands are the same IEEE operations as in `update`; the sum of
        the deviations (when the MAD is 0) is `math.fsum`, and scores `math.erf`, as there.
        A detector whose `update` is not this class's (a subclass's override, a patched
        method) gets its points through that `update`, one by one.
        If it raises, every detector's state is restored to what it was before the call.
        """
        if len({id(d) for d in detectors}) != len(detectors):
            raise ValueError("update_batches: a detector appears twice")
        saved = [(d.state, _copy(d.state)) for d in detectors]
        try:
            return _run_batches(detectors, ts, xs)
        except BaseException:
            for d, (state, copy) in zip(detectors, saved, strict=True):
                d.state = state  # the same struct, its fields as they were
                for name in RobustState.__struct_fields__:
                    setattr(state, name, getattr(copy, name))
            raise

    def _push(self, value: float) -> None:
        s = self.state
        if len(s.values) < self.params.window:
            s.values.append(value)
            return
        s.values[s.head] = value
        s.head = (s.head + 1) % len(s.values)


_NEG_ZERO = np.float64(-0.0).view(np.int64)
_UPDATE = RobustBaselineDetector.update  # what the vectorised path computes


def _copy(state: RobustState) -> RobustState:
    """A copy that shares no list with `state`."""
    return RobustState(
        values=list(state.values),
        head=state.head,
        run_ts=list(state.run_ts),
        run_xs=list(state.run_xs),
        run_side=state.run_side,
    )


class _Job:
    """The points of one detector in `update_batches`, and how far they went."""

    __slots__ = (
        "batch",
        "count",
        "detector",
        "force",
        "j",
        "points",
        "state",
        "ts",
        "values",
        "window",
        "xs",
    )

    def __init__(
        self,
        detector: RobustBaselineDetector,
        ts: Sequence[float],
        xs: Sequence[Any],
        batch: _RobustBatch,
    ) -> None:
        self.detector = detector
        self.state = detector.state  # `update` may replace its lists, never the struct
        self.window = detector.params.window
        self.ts = ts
        self.xs = xs
        self.batch = batch
        if None in xs:  # no verdict, no state: left out (a NaN goes through `update`)
            self.points: list[int] | None = [i for i, x in enumerate(xs) if x is not None]
            self.values: list[float] = [xs[i] for i in self.points]
        else:
            self.points, self.values = None, xs if type(xs) is list else list(xs)
        batch.points = self.points
        self.count = len(self.values)
        self.j = 0  # next point (among `values`) to judge
        self.force = False  # that point must go through `update`

    def one(self) -> None:
        """`update` on the next point."""
        i = self.j if self.points is None else self.points[self.j]
        verdict = self.detector.update(self.ts[i], self.xs[i])
        if verdict is not None:  # None for NaN
            self.batch._verdicts[i] = verdict
            self.batch.flags[i] = 2 if verdict.anomalous else 1
        self.j += 1

    def advance(self) -> bool:
        """`update` on the points until the steady state; whether points are left."""
        if self.force:
            self.force = False
            self.one()
        s, window, count = self.state, self.window, self.count
        while self.j < count and (len(s.values) != window or s.run_side or s.run_xs):
            self.one()
        return self.j < count


def _run_batches(
    detectors: Sequence[RobustBaselineDetector],
    ts: Sequence[Sequence[float]],
    xs: Sequence[Sequence[Any]],
) -> list[VerdictBatch]:
    if not len(detectors) == len(ts) == len(xs):
        raise ValueError("update_batches: as many time and value lists as detectors")
    out: list[VerdictBatch] = []
    jobs: list[_Job] = []
    for detector, times, values in zip(detectors, ts, xs, strict=True):
        if len(times) != len(values):
            raise ValueError(f"update_batch: {len(times)} times for {len(values)} values")
        batch = _RobustBatch(detector.params.threshold, values)
        out.append(batch)
        if (
            not _BATCH_TYPES.issuperset(map(type, values))  # ints, strings...
            or getattr(detector.update, "__func__", None) is not _UPDATE  # another `update`
        ):  # one by one
            update = detector.update
            verdicts = batch._verdicts
            for i, (t, x) in enumerate(zip(times, values, strict=True)):
                verdicts[i] = update(t, x)
            batch.flags = [0 if v is None else 2 if v.anomalous else 1 for v in verdicts]
        elif values:
            jobs.append(_Job(detector, times, values, batch))
    while jobs:
        ready = [job for job in jobs if (job.force or job.j < job.count) and job.advance()]
        by_window: dict[int, list[_Job]] = {}
        for job in ready:
            by_window.setdefault(job.window, []).append(job)
        for window, group in by_window.items():
            _steady_round(window, group)
        jobs = ready
    return out


def _steady_round(window: int, jobs: list[_Job]) -> None:
    """One vectorised step of jobs in the steady state (all with this window): each takes
    up to `_CHUNK` points, assumes them normal, keeps the prefix that is."""
    histories: list[list[float]] = []
    chunks: list[list[float]] = []
    wanted: list[int] = []
    for job in jobs:
        ring, head = job.state.values, job.state.head
        histories.append(ring[head:] + ring[:head])  # oldest first
        chunk = job.values[job.j : job.j + _CHUNK]
        chunks.append(chunk)
        wanted.append(len(chunk))
    flat = _flatten(histories, chunks)
    with np.errstate(all="ignore"):
        total = flat.sum()
    if not math.isfinite(total) or (flat.view(np.int64) == _NEG_ZERO).any():
        # NaN, an infinite value (or a sum beyond the float range) or -0.0 (it sorts as 0.0
        # but differs in sign, so the median could too): windows holding one go one by one
        for k, (history, chunk) in enumerate(zip(histories, chunks, strict=True)):
            if _bad(np.array(history)).any():
                chunks[k] = []
            else:
                bad = _bad(np.array(chunk))
                if bad.any():
                    chunks[k] = chunk[: int(np.argmax(bad))]
        keep = [k for k, chunk in enumerate(chunks) if chunk]
        for k, job in enumerate(jobs):
            if not chunks[k]:
                job.force = True
        if not keep:
            return
        jobs = [jobs[k] for k in keep]
        wanted = [wanted[k] for k in keep]
        histories = [histories[k] for k in keep]
        chunks = [chunks[k] for k in keep]
        flat = _flatten(histories, chunks)
    sizes = [len(chunk) for chunk in chunks]
    shape = (window, tuple(sizes))
    base, index = _layout(*shape) if window * sum(sizes) <= 65_536 else _layout.__wrapped__(*shape)
    with np.errstate(all="ignore"):  # overflows give inf as in `update`, silently
        windows = flat[index]
        windows.sort(axis=1)
        median = _middle(windows)
        deviations = np.abs(windows - median[:, None])
        deviations.sort(axis=1)
        mad = _middle(deviations)
        scale = MAD_TO_SIGMA * mad * _SMALL_SAMPLE.get(window, window / (window - 0.8))
        for row in np.flatnonzero(scale == 0.0).tolist():
            scale[row] = MEAN_AD_TO_SIGMA * math.fsum(deviations[row].tolist()) / window
        scale = np.maximum(np.maximum(scale, ABS_FLOOR), REL_FLOOR * np.abs(median))
        thresholds = [job.detector.params.threshold for job in jobs]
        threshold: Any = (
            thresholds[0] if len(set(thresholds)) == 1 else np.repeat(np.array(thresholds), sizes)
        )
        normal = np.abs((flat[base + window] - median) / scale) <= threshold
    first_bad = np.flatnonzero(~normal).tolist()
    start = 0
    for job, size, want, chunk in zip(jobs, sizes, wanted, chunks, strict=True):
        accepted = size
        if first_bad:
            k = bisect.bisect_left(first_bad, start)
            if k < len(first_bad) and first_bad[k] < start + size:
                accepted = first_bad[k] - start
        if accepted:
            _accept(job, chunk, accepted, median, scale, start, window)
        job.force = accepted < want
        start += size


@functools.lru_cache(maxsize=64)  # of at most 65536 indices each (512 kB)
def _layout(window: int, sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Where the rows of a round read in `flat` (histories of `window` points, each
    followed by a chunk of `sizes[k]` points): row r judges the point at
    `flat[base[r] + window]` from the window `flat[index[r]]`, that is
    `flat[base[r] : base[r] + window]`. Messages tend to have the same shape: cached."""
    base = np.repeat(np.arange(len(sizes)) * window, sizes) + np.arange(sum(sizes))
    index = base[:, None] + np.arange(window)
    base.flags.writeable = False
    index.flags.writeable = False
    return base, index


def _flatten(histories: list[list[float]], chunks: list[list[float]]) -> np.ndarray:
    """Each history followed by its chunk, one after the other."""
    out: list[float] = []
    for history, chunk in zip(histories, chunks, strict=True):
        out += history
        out += chunk
    return np.array(out, dtype=np.float64)


def _bad(values: np.ndarray) -> np.ndarray:
    """Values the vectorised path leaves to `update`: NaN, infinite ones and -0.0."""
    bad: np.ndarray = ~np.isfinite(values) | (values.view(np.int64) == _NEG_ZERO)
    return bad


def _accept(
    job: _Job,
    chunk: list[float],
    accepted: int,
    median: np.ndarray,
    scale: np.ndarray,
    row: int,
    window: int,
) -> None:
    """The first `accepted` points of the chunk are normal: record them, and leave the
    ring buffer as that many calls of `_push` would."""
    batch = job.batch
    j = job.j
    batch.segments.append((j, j + accepted, median, scale, row))
    if job.points is None:
        batch.flags[j : j + accepted] = [1] * accepted
    else:
        for i in job.points[j : j + accepted]:
            batch.flags[i] = 1
    s = job.state
    ring, head = s.values, s.head
    skip = max(0, accepted - window)
    keep = chunk[skip:accepted]
    at = (head + skip) % window
    first = min(len(keep), window - at)
    ring[at : at + first] = keep[:first]
    ring[: len(keep) - first] = keep[first:]
    s.head = (head + accepted) % window
    s.run_ts, s.run_xs, s.run_side = [], [], 0
    job.j = j + accepted


def _middle(rows: np.ndarray) -> np.ndarray:
    """The median of each sorted row, as `update` takes it from a sorted list."""
    n = rows.shape[1]
    mid = n // 2
    middle: np.ndarray = rows[:, mid] if n % 2 else 0.5 * (rows[:, mid - 1] + rows[:, mid])
    return middle


class _RobustBatch(VerdictBatch):
    """Verdicts of the vectorised path, built from the stored median and scale on demand."""

    __slots__ = ("points", "segments", "threshold", "xs")

    def __init__(self, threshold: float, xs: Sequence[Any]) -> None:
        super().__init__([None] * len(xs), [0] * len(xs))
        self.threshold = threshold
        self.xs = xs
        self.points: list[int] | None = None  # index among xs of each non-missing point
        # (first, end, medians, scales, row): points first..end-1 (among the non-missing
        # ones) judged by the vectorised path, from rows row.. of those arrays
        self.segments: list[tuple[int, int, np.ndarray, np.ndarray, int]] = []

    def get(self, i: int) -> Verdict | None:
        verdict = self._verdicts[i]
        if verdict is not None or self.flags[i] == 0:
            return verdict
        j = i if self.points is None else bisect.bisect_left(self.points, i)
        first, _, medians, scales, row = next(seg for seg in self.segments if seg[0] <= j < seg[1])
        value: float = self.xs[i]
        median, scale = float(medians[row + j - first]), float(scales[row + j - first])
        # the same operations, in the same order, as `RobustBaselineDetector.update`
        z = (value - median) / scale
        score = math.erf(abs(z) / _SQRT2)
        band = self.threshold * scale
        verdict = Verdict(score, False, value, median, median - band, median + band)
        self._verdicts[i] = verdict
        return verdict
