"""Online change points: level shifts and trend changes, located where they started.

A metric that steps to a new level or starts to drift is not a string of outliers: the
useful answer is once, "it changed, starting here", and then a model of the new regime.

Method: after every point, a generalised likelihood ratio (GLR) test on the current
segment's last `window` points. The null is a line (`level + slope * i`; a constant with
`trend=False`); each alternative adds one regressor that is zero before a candidate start
`tau`: a step (a level shift) or a hinge `(i - tau)+` (a change of slope), for every
`tau` that leaves `min_segment` points on each side. The statistic is the drop in the
residual sum of squares over the noise variance; its maximum over candidates and both
alternatives is tested, and its argmax is the least-squares estimate of where the change
started, reported as `changepoint_at`, usually a few points before the detecting point.
The segment then restarts there, so a change is reported once and the new level and
slope are learned from the new regime's own points.

Why so:
- At a fixed `tau` the statistic is chi-square(1) whatever the level, slope and length
  of the segment, so one threshold serves every series; the size of the change is not
  needed in advance (CUSUM needs it, and its last reset is a late location for a trend).
- The null line is fitted to the last `window` points only: slow curvature older than
  that does not build up into a false slope change, and once the window is full the
  statistic depends on a fixed number of points, so its calibration holds at every point.
- river's ADWIN and Page-Hinkley (compared in `benchmarks/changepoint.py`) model neither
  trends nor the location of a change, and hold state that only pickle serialises; here
  the state is the window, as msgspec lists.
- Bayesian online change-point detection would need a regression likelihood per run
  length for trends, and sets its false-alarm rate through a hazard prior rather than a
  run length between false alarms, which is what an alert budget is.

Robustness:
- Outliers: a point enters the segment clipped to `clip` noise sds around the segment's
  one-step prediction, and a change needs `min_segment` points after it, so an isolated
  spike cannot make a change point by itself, while a real shift (several points in a
  row beyond the clip) still does, with its size under-estimated and its location kept.
  The first points, seen before a scale exists, are clipped around a robust line
  (Siegel's repeated median, unmoved by up to half the points being wild) once it does;
  so are the new segment's points at a restart.
- Scale: from the last `window` first and second differences, whose median-centred,
  winsorised variances ignore the level, the slope, the one difference that straddles a
  shift and the two around a spike. It is not reset at a change point (a level shift
  moves the level, not the noise).
- Autocorrelation: the ratio of the two difference variances gives the lag-1
  autocorrelation `rho` of an AR(1) model, and the statistic uses the long-run variance
  `sigma^2 (1 + rho) / (1 - rho)` (rho clamped to [0, 0.9]), the one that the mean of a
  run of correlated points varies with. On white noise rho is over-estimated a little
  (its mean was 0.04 over 200-point windows), which costs some power, not false alarms.
- Small samples: the statistic goes through Wallace's t-to-normal approximation with
  `0.5 * len(raw)` degrees of freedom for the estimated scale (measured: about 0.6-0.7
  per point for sigma^2 on white noise), so the first few dozen points are not judged
  with an exact scale they do not have.

False alarms: `arl` is the wanted number of points between false alarms on a series
without change. The threshold comes from `ln ARL = A*h + B*ln h + C` (the shape of
Siegmund-Venkatraman's approximation for GLR scans), fitted by `benchmarks/changepoint.py
--calibrate` on 2.4 million points of white Gaussian noise, separately with and without
`trend`, for ARL between about 1e3 and 8e4 at the default window and minimum segment;
outside that range, and at other windows, it is an extrapolation. Restarts make alarms
come sooner than the fit says: realised points per false alarm on white noise
(`--check`, 300 000 points each) were about 7 700 at the default arl of 10 000 and about
570 at arl 1 000 (about 9 100 without `trend`, 43 000 at window 50: 7 alarms); other
noise (heavy tails, AR(1)) has not been measured this way yet.

Score: `1 - P(S >= s)`, one minus the fitted per-point tail probability of the statistic
on white noise, so it lies in [0, 1] and is monotone in the statistic.

Cost: O(window) numpy work per point (about 150 microseconds at the default window of
200 on the development machine); the state is the window's times and clipped values and
the last `window` raw values (about 4.3 kB of msgpack at the default window).

Known weaknesses: a hinge is only tested from `3 * min_segment` points after its start
(see HINGE_SPAN), so a young or gentle slope change is often reported as a level shift
placed a few points late; after a restart on a ramp a second alarm can follow.

Seasonality (`season: auto`, the default): a seasonal detector (its default model, see
`seasonal.py`) follows the raw points; once it has found a daily and/or weekly cycle, the
test sees each point minus the model's current profile at its time (level and trend kept:
they are what the test looks at), and the window already held is re-expressed the same way,
the segment restarting from it. Before a cycle is found (three cycles of data), and on a
series without one, the test sees the raw points. `season: none` always tests raw points.

Not modelled: changes of variance alone.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Any, Final, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from lupus_stream.detection.base import Detector, Verdict
from lupus_stream.detection.seasonal import SeasonalDetector, SeasonalState

REL_FLOOR: Final = 1e-6  # scale never below this fraction of |median| ...
ABS_FLOOR: Final = 1e-12  # ... nor below this absolute value
MAD_TO_SIGMA: Final = 1.4826
MEAN_AD_TO_SIGMA: Final = 1.2533
RHO_MAX: Final = 0.9
MIN_SCALE_POINTS: Final = 10  # observed points needed before the scale (and the test) exist
DOF_PER_POINT: Final = 0.5  # effective degrees of freedom of the scale per observed point
# A hinge puts most weight on its newest points (leverage of the newest about 3 / post,
# a step's 1 / post): it needs this many times `min_segment` points after its start, so
# that a short burst moves it no more than it moves a step.
HINGE_SPAN: Final = 3

# (A, B, C, h0) of ln ARL(h) = A * h + B * ln h + C, points between false alarms on white
# Gaussian noise at threshold h >= h0, by `trend`; fitted by `benchmarks/changepoint.py
# --calibrate` at the default window and min_segment, continued linearly below h0
_ARL: Final = {True: (0.8044, -5.4155, 10.9182, 11.50), False: (0.8246, -5.7269, 11.5694, 11.0)}
# (a, b, c) of ln P(S >= s) = a * s + b * ln s + c per point, fitted the same way
_TAIL: Final = {True: (-0.5806, 0.7985, 0.6250), False: (-0.6296, 0.9341, 0.3524)}

Array = npt.NDArray[np.float64]


class ChangePointParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Test window, minimum segment, false-alarm run length, clip, model and season."""

    window: Annotated[int, msgspec.Meta(ge=20, le=5_000)] = 200
    min_segment: Annotated[int, msgspec.Meta(ge=3, le=1_000)] = 5
    arl: Annotated[float, msgspec.Meta(ge=50, le=1e9)] = 10_000.0
    clip: Annotated[float, msgspec.Meta(ge=1.0, le=100.0)] = 3.0
    trend: bool = True
    season: Literal["auto", "none"] = "auto"

    def __post_init__(self) -> None:
        if 2 * self.min_segment > self.window:
            raise ValueError(
                f"2 * min_segment ({self.min_segment}) must not exceed window ({self.window})"
            )


class ChangePointState(msgspec.Struct):
    """The current segment's last `window` points (clipped) and the last raw values."""

    n: int = 0  # points in the current segment, including those older than the window
    offset: float = 0.0  # first value of the segment, subtracted for numerical range
    win_t: list[float] = []  # event times of the segment's last `window` points
    win_y: list[float] = []  # their clipped values, minus `offset`
    raw: list[float] = []  # the last `window` observed values, across segments
    seeded: bool = False  # the segment has been clipped since the scale exists
    changes: int = 0  # change points reported so far
    # `season: auto`: a seasonal model of the raw points; once it has found a daily or
    # weekly cycle, the test sees the points minus that cycle (`deseasonalised`)
    raw_t: list[float] = []  # event times of `raw`
    season: SeasonalState | None = None
    deseasonalised: bool = False


class Scale(msgspec.Struct, frozen=True):
    """Noise scale of recent points: marginal sd, long-run sd and lag-1 autocorrelation."""

    sigma: float
    long_run: float
    rho: float


def _median(a: Array) -> float:
    """Median by partial sort (np.median's checks cost more than the work here)."""
    n = len(a)
    k = n // 2
    if n % 2:
        return float(np.partition(a, k)[k])
    part = np.partition(a, (k - 1, k))
    return 0.5 * float(part[k - 1] + part[k])


def _winsorised_var(d: Array, clip: float) -> tuple[float, bool]:
    """Variance of `d` around its median, each deviation clipped at `clip` robust sds.

    Also says whether the median absolute deviation was 0 (most differences equal: a
    flat or coarsely quantised series), where the robust sd falls back on the mean one.
    """
    dev = d - _median(d)
    mad = _median(np.abs(dev))
    scale = MAD_TO_SIGMA * mad
    if scale == 0.0:
        scale = MEAN_AD_TO_SIGMA * float(np.mean(np.abs(dev)))
    bound = clip * scale
    clipped = np.clip(dev, -bound, bound)
    return float(np.dot(clipped, clipped)) / len(d), mad == 0.0


def noise_scale(raw: list[float], clip: float) -> Scale:
    """Scale of the noise in `raw` from its lag-1 and lag-2 differences (level-free)."""
    r = np.asarray(raw, dtype=np.float64)
    v1, flat = _winsorised_var(r[1:] - r[:-1], clip)
    v2, _ = _winsorised_var(r[2:] - r[:-2], clip)
    floor = max(ABS_FLOOR, REL_FLOOR * abs(_median(r)))
    if v1 <= 2.0 * floor * floor:
        return Scale(floor, floor, 0.0)
    # equal differences carry no autocorrelation; a few unequal ones would fake it
    rho = 0.0 if flat else min(RHO_MAX, max(0.0, v2 / v1 - 1.0))
    sigma = max(math.sqrt(v1 / (2.0 * (1.0 - rho))), floor)
    return Scale(sigma, sigma * math.sqrt((1.0 + rho) / (1.0 - rho)), rho)


def _wallace(s: float, dof: float) -> float:
    """Squared normal quantile of a squared t statistic `s` with `dof` degrees of freedom."""
    factor = (8.0 * dof + 1.0) / (8.0 * dof + 3.0)
    return factor * factor * dof * math.log1p(s / dof)


def log_arl(h: float, trend: bool = True) -> float:
    """Fitted ln of the run length between false alarms at threshold `h`."""
    a, b, c, h0 = _ARL[trend]
    if h >= h0:
        return a * h + b * math.log(h) + c
    return a * h0 + b * math.log(h0) + c + (a + b / h0) * (h - h0)


def threshold_for(arl: float, trend: bool = True) -> float:
    """The statistic level whose fitted run length between false alarms is `arl`."""
    target = math.log(arl)
    lo, hi = 0.0, 500.0
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if log_arl(mid, trend) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def tail_probability(s: float, trend: bool = True) -> float:
    """Fitted per-point P(S >= s) of the statistic on a series without change."""
    if s <= 1.0:
        return 1.0
    a, b, c = _TAIL[trend]
    return min(1.0, math.exp(a * s + b * math.log(s) + c))


class Scan(msgspec.Struct, frozen=True):
    """Best alternative of one scan: statistic, post-change length, kind and size."""

    stat: float
    post: int
    kind: str
    size: float


def line_fit(y: Array, trend: bool) -> tuple[float, float]:
    """OLS level at the newest point of `y` and slope per point (0 without trend)."""
    w = len(y)
    if not trend or w < 3:
        return float(np.mean(y)), 0.0
    j = np.arange(1 - w, 1, dtype=np.float64)  # newest point at j = 0
    jm = (1 - w) / 2.0
    slope = float(np.dot(j - jm, y)) / float(np.dot(j - jm, j - jm))
    return float(np.mean(y)) - slope * jm, slope


@lru_cache(maxsize=256)
def _design(w: int, min_segment: int, trend: bool) -> tuple[Array, ...]:
    """What `scan` needs that depends only on the segment length: regressor sums, z'Mz."""
    m = min_segment
    hi = w - m
    k = np.arange(hi, dtype=np.float64)
    n2 = k + 1.0
    if not trend:
        return k, n2, _inverse(n2 * (w - n2) / w)
    sj = -w * (w - 1) / 2.0
    sjj = (w - 1) * w * (2 * w - 1) / 6.0
    det = w * sjj - sj * sj
    zj = -n2 * (n2 - 1.0) / 2.0
    step_den = n2 - (sjj * n2 * n2 - 2.0 * sj * n2 * zj + w * zj * zj) / det
    g1 = n2 * (n2 - 1.0) / 2.0
    gj = -n2 * (n2 - 1.0) * (n2 - 2.0) / 6.0
    gg = (n2 - 1.0) * n2 * (2.0 * n2 - 1.0) / 6.0
    hinge_den = gg - (sjj * g1 * g1 - 2.0 * sj * g1 * gj + w * gj * gj) / det
    ages = np.arange(w, dtype=np.float64)
    consts = np.array([sj, sjj, det])
    for a in (k, n2, zj, g1, gj, ages, consts):
        a.setflags(write=False)
    return k, n2, _inverse(step_den), zj, g1, gj, _inverse(hinge_den), ages, consts


def scan(
    y: Array, min_segment: int, trend: bool, var: float, locate: str | None = None
) -> Scan | None:
    """Largest GLR over post-change lengths for a step and (with `trend`) a hinge.

    `y` is the segment, oldest first; the null is a line (a constant without `trend`),
    each alternative adds one regressor `z` that is zero before the candidate start, and
    the statistic is the drop in residual sum of squares over `var`, `(z'My)^2 / z'Mz`.
    Candidates leave `min_segment` points before the start and, for the test, at least
    `min_segment` (a step) or `HINGE_SPAN * min_segment` (a hinge) from it on. With
    `locate` set to a kind, only that alternative is scanned, from 1 (a step) or
    `min_segment` (a hinge) points on: the least-squares start of a change already found.
    """
    w, m = len(y), min_segment
    if w - m < (1 if locate else m):
        return None
    design = _design(w, m, trend)
    r = y[::-1]  # newest first
    rh = r[: w - m]
    y2 = np.cumsum(rh)  # sum of the post-change values, by post-change length
    sum_y = float(np.sum(y))
    step_from = 1 if locate else m
    hinge_from = m if locate else HINGE_SPAN * m
    if not trend:
        _, n2, inv_den = design
        return _best(y2 - n2 * (sum_y / w), inv_den, var, step_from, "level_shift")
    k, n2, step_inv, zj, g1, gj, hinge_inv, ages, consts = design
    sj, sjj, det = float(consts[0]), float(consts[1]), float(consts[2])
    sum_jy = -float(np.dot(ages, r))  # j = -age: the newest point is at j = 0
    b0 = (sjj * sum_y - sj * sum_jy) / det
    b1 = (w * sum_jy - sj * sum_y) / det
    best = None
    if locate in (None, "level_shift"):  # step: z = 1 on the post-change part
        best = _best(y2 - (n2 * b0 + zj * b1), step_inv, var, step_from, "level_shift")
    if locate in (None, "trend_change") and w - m >= hinge_from:
        # hinge: g = 0 at the first post-change point, rising by 1 per point after it
        gy = (n2 - 1.0) * y2 - np.cumsum(k * rh)
        hinge = _best(gy - (g1 * b0 + gj * b1), hinge_inv, var, hinge_from, "trend_change")
        if best is None or hinge.stat > best.stat:
            best = hinge
    return best


def _inverse(den: Array) -> Array:
    """1 / z'Mz where it is not degenerate (a regressor the line explains), else 0."""
    ok = den > 1e-9 * max(1.0, float(np.max(np.abs(den))))
    inv = np.zeros_like(den)
    inv[ok] = 1.0 / den[ok]
    inv.setflags(write=False)
    return inv


def _best(num: Array, inv_den: Array, var: float, first: int, kind: str) -> Scan:
    """The largest statistic among post-change lengths from `first` on."""
    num, inv_den = num[first - 1 :], inv_den[first - 1 :]
    stat = num * num * inv_den
    i = int(np.argmax(stat))
    return Scan(float(stat[i]) / var, first + i, kind, float(num[i] * inv_den[i]))


class ChangePointDetector(Detector[ChangePointParams, ChangePointState]):
    """Windowed GLR test for level shifts and slope changes (see the module doc).

    Every observed point gets a verdict: quiet, with `score = 1 - P(S >= s)` (S the scan
    statistic on a series without change) and `expected` = the segment's one-step
    prediction, until the statistic crosses the threshold set by `arl`. That point gets
    `anomalous=True`, kind `level_shift` or `trend_change`, and `changepoint_at` = the
    event time of the estimated first point of the new regime; the segment restarts
    there. Missing points (`None`, NaN, infinities) give no verdict and change nothing.

    >>> d = ChangePointDetector()
    >>> xs = [10.0 + 0.5 * ((i * 7) % 5 - 2) for i in range(60)]
    >>> xs += [14.0 + 0.5 * ((i * 7) % 5 - 2) for i in range(60, 80)]
    >>> found = [v for v in d.update_many(range(80), xs) if v is not None and v.anomalous]
    >>> [(v.kind, v.changepoint_at) for v in found]
    [('level_shift', 60)]
    """

    kind = "changepoint"
    version = 3
    Params = ChangePointParams
    State = ChangePointState

    def __init__(
        self, params: ChangePointParams | None = None, state: ChangePointState | None = None
    ) -> None:
        super().__init__(params, state)
        self.threshold = threshold_for(self.params.arl, self.params.trend)
        self.last_statistic = 0.0  # the scan statistic of the last point (not state)
        self.season: SeasonalDetector | None = None
        if self.params.season == "auto":
            self.season = SeasonalDetector(state=self.state.season)
            self.state.season = self.season.state

    def update(self, t: float, x: Any) -> Verdict | None:
        if x is None:
            return None
        observed = float(x)
        if not math.isfinite(observed):
            return None
        p, s = self.params, self.state
        value, cycle = observed, 0.0
        if self.season is not None:
            self.season.update(t, observed)
            s.season = self.season.state
            if not s.deseasonalised and self.season.periods not in (None, "none"):
                self._deseasonalise()
            if s.deseasonalised:
                cycle = self.season.season_at(t)
                value -= cycle
        s.raw.append(value)
        s.raw_t.append(t)
        if len(s.raw) > p.window:
            del s.raw[0], s.raw_t[0]
        if len(s.raw) < MIN_SCALE_POINTS:
            if s.n == 0:
                s.offset = value
            self._push(t, value - s.offset)
            return Verdict(0.0, False, observed, detail="warming up")

        scale = noise_scale(s.raw, p.clip)
        if not s.seeded:  # clip the points seen before the scale existed
            self._seed([*s.win_t, t], len(s.win_t) + 1, scale.sigma)
            expected = value
        else:
            expected = self._predict()
            bound = p.clip * scale.sigma
            y = value - s.offset
            centre = expected - s.offset
            self._push(t, centre + min(bound, max(-bound, y - centre)))
        expected += cycle

        self.last_statistic = 0.0
        segment = np.asarray(s.win_y, dtype=np.float64)
        best = scan(segment, p.min_segment, p.trend, 1.0)
        if best is None:
            return Verdict(0.0, False, observed, expected, kind="changepoint")
        dof = DOF_PER_POINT * len(s.raw)
        stat = _wallace(best.stat / (scale.long_run * scale.long_run), dof)
        self.last_statistic = stat
        score = 1.0 - tail_probability(stat, p.trend)
        if stat <= self.threshold:
            return Verdict(score, False, observed, expected, kind="changepoint")

        best = scan(segment, p.min_segment, p.trend, 1.0, locate=best.kind) or best
        start = s.win_t[-best.post]
        if best.kind == "level_shift":
            size = f"level shift {best.size:+.4g} ({best.size / scale.long_run:+.1f} long-run sd)"
        else:
            size = f"trend change {best.size:+.4g} per point ({best.size / scale.sigma:+.2f} sd)"
        detail = (
            f"{size} starting {best.post} points ago; GLR {stat:.1f} > {self.threshold:.1f} "
            f"(arl {p.arl:g}, rho {scale.rho:.2f})"
        )
        if s.deseasonalised:
            detail += f"; {self.season.periods if self.season else ''} cycle removed"
        self._seed(s.win_t[-best.post :], best.post, scale.sigma)
        s.changes += 1
        return Verdict(
            score,
            True,
            observed,
            expected,
            changepoint_at=start,
            kind=best.kind,
            detail=detail,
        )

    def _deseasonalise(self) -> None:
        """The seasonal model has found its cycle: from now on the test sees the points
        without it, and the window it holds is re-expressed so, the segment restarting
        from it (the cycle found is known from the points already in the window)."""
        s = self.state
        assert self.season is not None
        s.raw = [x - self.season.season_at(t) for t, x in zip(s.raw_t, s.raw, strict=True)]
        s.deseasonalised = True
        if len(s.raw) >= MIN_SCALE_POINTS and s.win_t:
            sigma = noise_scale(s.raw, self.params.clip).sigma
            count = min(len(s.win_t), len(s.raw))
            self._seed(s.win_t[-count:], count, sigma)

    def _predict(self) -> float:
        """The segment's prediction for its next point (its median while it is short)."""
        s, p = self.state, self.params
        y = np.asarray(s.win_y, dtype=np.float64)
        if len(y) < p.min_segment:
            return s.offset + _median(y)
        level, slope = line_fit(y, p.trend)
        return s.offset + level + slope

    def _push(self, t: float, y: float) -> None:
        s = self.state
        s.n += 1
        s.win_t.append(t)
        s.win_y.append(y)
        if len(s.win_y) > self.params.window:
            del s.win_t[0]
            del s.win_y[0]

    def _seed(self, times: list[float], count: int, sigma: float) -> None:
        """Make the last `count` raw points the segment, clipped around a robust line."""
        s, p = self.state, self.params
        values = np.asarray(s.raw[-count:], dtype=np.float64)
        idx = np.arange(count, dtype=np.float64)
        slope = 0.0
        if p.trend and count >= 3:  # Siegel's repeated median: half the points may be wild
            di = idx[None, :] - idx[:, None]
            np.fill_diagonal(di, np.nan)
            pairwise = (values[None, :] - values[:, None]) / di
            slope = float(np.median(np.nanmedian(pairwise, axis=1)))
        level = float(np.median(values - slope * idx))
        fit = level + slope * idx
        # a few spikes among few points inflate the difference-based sigma: the spread
        # around the robust line, when it exists, is the better guide here
        spread = MAD_TO_SIGMA * _median(np.abs(values - fit))
        bound = p.clip * (min(sigma, spread) if spread > 0.0 else sigma)
        clipped = fit + np.clip(values - fit, -bound, bound)
        s.n, s.offset, s.seeded = 0, float(values[0]), True
        s.win_t, s.win_y = [], []
        for t, v in zip(times[-count:], clipped.tolist(), strict=True):
            self._push(t, v - s.offset)
