"""Seasonal detector: online seasonal-trend decomposition with robust residual scoring.

The default detector of a metric monitor. Business and model metrics have daily and
weekly cycles and drift slowly; the question is never "is this value high?" but "is it
far from what this hour of this weekday usually looks like, given the recent level?".

How it works, per series:

1. **Sampling interval** from the median of the first gaps between points; phases are
   computed from timestamps, so gaps, irregular sampling and late points keep their
   place in the cycle.
2. **Period detection.** Once the history holds two candidate periods (a day, a week)
   the detector decomposes it (centred moving average for the trend, per-phase medians
   for the season) and keeps a period whose seasonal strength
   `1 - var(remainder) / var(season + remainder)` (robust variances) is at least
   `min_strength`. A week is tested on what the daily season leaves. Until a decision
   it re-tests each new period of data, up to `max_checks` times; `period` in the
   parameters (`auto`, `none`, `1d`, `1w`, `1d+1w`) can also fix it.
3. **Online model** (O(1) per point): `expected = level + daily[phase] + weekly[phase]`.
   The residual updates level, profiles and a robust scale (an exponentially weighted
   mean absolute residual) with Huber-clipped steps, so an outlier moves nothing much.
4. **Score.** `z = residual / scale`, two-sided normal tail probability `p`, and
   `score = L / (L + 6)` with `L = log10(1/p)`: monotone in `p`, so one threshold means
   the same on every series (0.5 is `p = 1e-6`), and graded however extreme the point,
   where `1 - p` would round to 1.0 beyond z = 8. A point is anomalous when its score
   reaches the threshold (0.5 at the default `sensitivity` 0.5; higher sensitivity =
   lower threshold = more alerts).
5. **Level shifts.** `shift_after` anomalies in a row on one side are a new level: the
   detector reports it once (`changepoint_at` = the run's first point, kind
   `level_shift`) and moves the level by the run's median residual.

Cold start: until a period is decided, the model is level-only (a robust baseline), with
the scale taken from the median absolute deviation of the first points.
"""

from __future__ import annotations

import math
import struct
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from lupus_stream.detection.base import Detector, Verdict

DAY = 86400.0
WEEK = 7 * DAY
MAD_TO_SIGMA = 1.4826
MEAN_ABS_TO_SIGMA = 1.2533
HALF_SCORE_LOG10_P = 6.0  # score 0.5 at p = 1e-6
INTERVAL_SAMPLES = 16
MAX_HISTORY = 4096  # raw points kept for the period decision (a fortnight of 5-min data)
TAIL_START = 3.0  # |z| beyond which the tail is learned rather than assumed normal
TAIL_PRIOR_RATE = math.erfc(TAIL_START / math.sqrt(2.0))  # a normal tail to start from
TAIL_PRIOR_EXCESS = 0.3  # mean excess of a normal beyond 3 sigma, about 1/3
_FLOAT = struct.Struct("<f")
_NAN = _FLOAT.pack(math.nan)

Period = Literal["auto", "none", "1d", "1w", "1d+1w"]


class SeasonalParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Sensitivity, period choice, adaptation rates and the level-shift run length."""

    sensitivity: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    period: Period = "auto"
    min_strength: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.6
    max_checks: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    level_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.1
    season_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.1
    scale_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.02
    clip: Annotated[float, msgspec.Meta(gt=0.0)] = 3.0
    warmup: Annotated[int, msgspec.Meta(ge=3, le=1000)] = 12
    short_window: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    long_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.002
    mode: Literal["point", "likelihood"] = "likelihood"
    shift_after: Annotated[int, msgspec.Meta(ge=1)] = 3

    @property
    def threshold(self) -> float:
        """Score above which a point is anomalous: 0.5 at the default sensitivity."""
        return 0.75 - 0.5 * self.sensitivity


class SeasonalState(msgspec.Struct):
    """Learned model: interval, period decision, level, profiles, scale, history."""

    n: int = 0
    t_last: float | None = None
    gaps: list[float] = []
    interval: float = 0.0
    decided: bool = False
    checks: int = 0
    next_check: int = 0
    day_bins: int = 0
    week_bins: int = 0
    daily: list[float] = []
    weekly: list[float] = []
    level: float = 0.0
    scale: float = 0.0
    warm: list[float] = []
    history: bytearray = bytearray()  # float32 values on the sampling grid (NaN = gap)
    run_ts: list[float] = []
    run_res: list[float] = []
    run_side: int = 0
    recent: list[float] = []  # the last `short_window` raw surprises
    recent_at: int = 0
    long_mean: float = 0.0  # of the short-window average of raw surprises
    long_var: float = 0.0
    long_n: int = 0


def _bins(period: float, interval: float) -> int:
    return max(2, round(period / interval))


def _phase(t: float, period: float, bins: int) -> int:
    return int((t % period) / period * bins) % bins


def _robust_var(x: np.ndarray) -> float:
    mad = float(np.median(np.abs(x - np.median(x))))
    return (MAD_TO_SIGMA * mad) ** 2


def decompose(values: np.ndarray, bins: int, phases: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-phase median season of `values` around a centred moving-average trend.

    Returns the season profile (length `bins`, centred on 0) and the seasonal strength.
    """
    kernel = np.ones(bins) / bins
    trend = np.convolve(values, kernel, mode="same")
    half = bins // 2
    inner = slice(half, len(values) - half)
    detrended = values[inner] - trend[inner]
    ph = phases[inner]
    profile = np.zeros(bins)
    for b in range(bins):
        at = detrended[ph == b]
        if at.size:
            profile[b] = float(np.median(at))
    profile -= float(np.median(profile))
    season = profile[ph]
    remainder = detrended - season
    total = _robust_var(season + remainder)
    if total <= 0.0:
        return profile, 0.0
    return profile, max(0.0, 1.0 - _robust_var(remainder) / total)


class SeasonalDetector(Detector[SeasonalParams, SeasonalState]):
    """Robust residuals of an online seasonal-trend model, with period detection.

    >>> import math
    >>> d = SeasonalDetector()
    >>> hour = 3600.0
    >>> _ = [d.update(i * hour, 100 + 30 * math.sin(2 * math.pi * i / 24) + (i * 7 % 5))
    ...      for i in range(24 * 5)]
    >>> d.state.day_bins  # found the daily cycle
    24
    >>> d.update(24 * 5 * hour, 100 + 30 * math.sin(0) + 80).anomalous
    True
    """

    kind = "seasonal"
    version = 1
    Params = SeasonalParams
    State = SeasonalState

    def __init__(self, params: SeasonalParams | None = None, state: SeasonalState | None = None):
        super().__init__(params, state)
        self._band_z = _band(self.params.threshold)

    # -- model -----------------------------------------------------------------------

    def _season(self, t: float) -> tuple[float, int, int]:
        s = self.state
        value, dph, wph = 0.0, -1, -1
        if s.day_bins:
            dph = _phase(t, DAY, s.day_bins)
            value += s.daily[dph]
        if s.week_bins:
            wph = _phase(t, WEEK, s.week_bins)
            value += s.weekly[wph]
        return value, dph, wph

    def update(self, t: float, x: Any) -> Verdict | None:
        if x is None:
            return None
        value = float(x)
        if value != value or math.isinf(value):
            return None
        p, s = self.params, self.state
        fresh = s.t_last is None or t > s.t_last
        if fresh:
            gap = 0.0 if s.t_last is None else t - s.t_last
            self._observe_time(t)
            s.n += 1
            if not s.decided:
                self._remember(value, gap)
        if len(s.warm) < p.warmup:
            if fresh:
                s.warm.append(value)
                if len(s.warm) == p.warmup:
                    self._start_level()
            return Verdict(0.0, False, value, detail=f"warming up ({len(s.warm)}/{p.warmup})")

        season, dph, wph = self._season(t)
        expected = s.level + season
        residual = value - expected
        scale = max(s.scale, 1e-9, 1e-6 * abs(expected))
        z = residual / scale
        score = self._score(z)
        band = self._band_z * scale
        anomalous = score >= p.threshold
        if fresh:
            self._learn(residual, scale, dph, wph, anomalous)
        if not anomalous:
            s.run_ts, s.run_res, s.run_side = [], [], 0
            return Verdict(score, False, value, expected, expected - band, expected + band)
        return self._anomaly(t, value, expected, band, residual, z, score, fresh)

    def _anomaly(
        self,
        t: float,
        value: float,
        expected: float,
        band: float,
        residual: float,
        z: float,
        score: float,
        fresh: bool,
    ) -> Verdict:
        p, s = self.params, self.state
        side = 1 if residual > 0 else -1
        detail = f"robust z {z:+.1f} from {expected:.4g}" + (
            "" if s.decided and (s.day_bins or s.week_bins) else " (no season yet)"
        )
        lower, upper = expected - band, expected + band
        if not fresh:
            return Verdict(score, True, value, expected, lower, upper, detail=detail)
        if side != s.run_side:
            s.run_ts, s.run_res, s.run_side = [], [], side
        s.run_ts.append(t)
        s.run_res.append(residual)
        if len(s.run_res) < p.shift_after:
            return Verdict(score, True, value, expected, lower, upper, detail=detail)
        shift = float(np.median(s.run_res))
        start = s.run_ts[0]
        s.level += shift
        s.run_ts, s.run_res, s.run_side = [], [], 0
        return Verdict(
            score,
            True,
            value,
            expected,
            lower,
            upper,
            changepoint_at=start,
            kind="level_shift",
            detail=f"level shift of {shift:+.4g}; " + detail,
        )

    def _learn(self, residual: float, scale: float, dph: int, wph: int, anomalous: bool) -> None:
        p, s = self.params, self.state
        limit = p.clip * scale
        step = residual if -limit <= residual <= limit else math.copysign(limit, residual)
        s.level += p.level_rate * step
        seasonal_step = p.season_rate * (step - p.level_rate * step)
        if dph >= 0 and wph >= 0:
            s.daily[dph] += 0.5 * seasonal_step
            s.weekly[wph] += 0.5 * seasonal_step
        elif dph >= 0:
            s.daily[dph] += seasonal_step
        elif wph >= 0:
            s.weekly[wph] += seasonal_step
        if not anomalous:
            s.scale += p.scale_rate * (MEAN_ABS_TO_SIGMA * abs(step) - s.scale)

    def _score(self, z: float) -> float:
        """Score of the latest surprise against this series' own history of surprises.

        The raw surprise of a point is `min(1, (z / 6) ** 2)`. Its average over the last
        `short_window` points is compared with the long-run mean and spread of that
        average (exponentially weighted); the score is the upper tail probability of the
        difference, turned into `L / (L + 6)` with `L = log10(1/p)`. A spiky series has a
        high, wide long-run average, so its routine spikes are routine; a quiet series
        that starts to misbehave lifts the short average well clear of its history.
        """
        if self.params.mode == "point":
            surprise = -_log10_p(z)
            return surprise / (surprise + HALF_SCORE_LOG10_P)
        p, s = self.params, self.state
        raw = min(1.0, z * z / 36.0)
        if len(s.recent) < p.short_window:
            s.recent.append(raw)
        else:
            s.recent[s.recent_at] = raw
            s.recent_at = (s.recent_at + 1) % p.short_window
        short = sum(s.recent) / len(s.recent)
        if s.long_n < 2:
            s.long_mean, s.long_var = short, 0.0
            s.long_n += 1
            return 0.0
        spread = math.sqrt(max(s.long_var, 1e-8))
        zz = (short - s.long_mean) / spread
        log10_p = _log10_p(zz) - math.log10(2.0) if zz > 0 else 0.0
        surprise = -log10_p
        rate = max(p.long_rate, 1.0 / (s.long_n + 1))
        delta = short - s.long_mean
        s.long_mean += rate * delta
        s.long_var = (1 - rate) * (s.long_var + rate * delta * delta)
        s.long_n += 1
        return surprise / (surprise + HALF_SCORE_LOG10_P)

    # -- start-up ----------------------------------------------------------------------

    def _observe_time(self, t: float) -> None:
        s = self.state
        if s.t_last is not None and len(s.gaps) < INTERVAL_SAMPLES:
            s.gaps.append(t - s.t_last)
            s.interval = float(np.median(s.gaps))
        s.t_last = t

    def _start_level(self) -> None:
        s = self.state
        warm = np.asarray(s.warm)
        s.level = float(np.median(warm))
        mad = float(np.median(np.abs(warm - s.level)))
        spread = float(np.mean(np.abs(warm - s.level)))
        s.scale = max(MAD_TO_SIGMA * mad, MEAN_ABS_TO_SIGMA * spread, 1e-9)

    def _remember(self, value: float, gap: float) -> None:
        """Keep raw history on the sampling grid for the period decision, then decide."""
        p, s = self.params, self.state
        if s.interval > 0.0 and gap > 1.5 * s.interval:
            missing = min(round(gap / s.interval) - 1, MAX_HISTORY)
            s.history += _NAN * missing
        s.history += _FLOAT.pack(value)
        if len(s.history) > 4 * MAX_HISTORY:
            del s.history[: len(s.history) - 4 * MAX_HISTORY]
        if s.interval <= 0.0 or len(s.gaps) < INTERVAL_SAMPLES:
            return
        count = len(s.history) // 4
        if p.period != "auto":
            self._fix_period(p.period, count)
            return
        day = _bins(DAY, s.interval)
        if s.next_check == 0:
            s.next_check = 2 * day
        if count >= s.next_check:
            self._check_periods(day)

    def _values(self) -> np.ndarray:
        """The history as floats, gaps filled by linear interpolation."""
        values = np.frombuffer(bytes(self.state.history), dtype="<f4").astype(float)
        gaps = np.isnan(values)
        if gaps.any() and not gaps.all():
            index = np.arange(len(values))
            values[gaps] = np.interp(index[gaps], index[~gaps], values[~gaps])
        return values

    def _phases(self, count: int, period: float, bins: int) -> np.ndarray:
        s = self.state
        assert s.t_last is not None
        times = s.t_last - s.interval * np.arange(count - 1, -1, -1)
        return (((times % period) / period) * bins).astype(int) % bins

    def _check_periods(self, day: int) -> None:
        p, s = self.params, self.state
        values = self._values()
        week = _bins(WEEK, s.interval)
        daily = None
        if len(values) >= 2 * day and day <= MAX_HISTORY // 2:
            profile, strength = decompose(values, day, self._phases(len(values), DAY, day))
            if strength >= p.min_strength:
                daily = profile
        weekly = None
        if len(values) >= 2 * week:
            rest = values
            if daily is not None:
                rest = values - daily[self._phases(len(values), DAY, day)]
            profile, strength = decompose(rest, week, self._phases(len(values), WEEK, week))
            if strength >= p.min_strength:
                weekly = profile
        s.checks += 1
        s.next_check = len(values) + day
        can_grow = len(values) < min(MAX_HISTORY, 2 * week)
        if daily is None and weekly is None and s.checks < p.max_checks and can_grow:
            return
        if daily is not None and weekly is None and can_grow and 2 * week <= MAX_HISTORY:
            self._install(daily, None)  # keep testing for a weekly cycle
            return
        self._install(daily, weekly)
        s.decided = True
        s.history = bytearray()

    def _fix_period(self, period: str, count: int) -> None:
        s = self.state
        if period == "none":
            s.decided, s.history = True, bytearray()
            return
        day, week = _bins(DAY, s.interval), _bins(WEEK, s.interval)
        want_day, want_week = "1d" in period, "1w" in period
        need = 2 * (week if want_week else day)
        if count < min(need, MAX_HISTORY):
            return
        values = self._values()
        daily = weekly = None
        if want_day:
            daily, _ = decompose(values, day, self._phases(len(values), DAY, day))
            values = values - daily[self._phases(len(values), DAY, day)]
        if want_week:
            weekly, _ = decompose(values, week, self._phases(len(values), WEEK, week))
        self._install(daily, weekly)
        s.decided, s.history = True, bytearray()

    def _install(self, daily: np.ndarray | None, weekly: np.ndarray | None) -> None:
        s = self.state
        if daily is not None and not s.day_bins:
            s.day_bins, s.daily = len(daily), [float(v) for v in daily]
        if weekly is not None and not s.week_bins:
            s.week_bins, s.weekly = len(weekly), [float(v) for v in weekly]


def _log10_p(z: float) -> float:
    """log10 of the two-sided normal tail probability of z, accurate far into the tail."""
    a = abs(z)
    if a < 8.0:
        return math.log10(math.erfc(a / math.sqrt(2.0)))
    return -(a * a / 2.0 + math.log(a * math.sqrt(math.pi / 2.0))) / math.log(10.0)


def _score(z: float) -> float:
    """L / (L + 6) with L = log10(1/p): 0.5 at p = 1e-6, graded without saturating."""
    surprise = -_log10_p(z)
    return surprise / (surprise + HALF_SCORE_LOG10_P)


def _band(threshold: float) -> float:
    """|z| at which the score reaches `threshold` (for the expected band)."""
    target = -HALF_SCORE_LOG10_P * threshold / (1.0 - threshold)  # log10 p at the threshold
    lo, hi = 0.0, 60.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _log10_p(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi
