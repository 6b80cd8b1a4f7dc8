"""Seasonal detector: online seasonal-trend model, calibrated tail scores, one alert per incident.

The default detector of a metric monitor. Business and model metrics have daily and
weekly cycles and drift slowly; the question is never "is this value high?" but "is it
far from what this hour of this weekday usually looks like, given the recent level, and
is that rarer than what this series usually does?".

How it works, per series:

1. **Sampling interval** from the median of the first gaps between points; phases are
   computed from timestamps, so gaps, irregular sampling and late points keep their
   place in the cycle.
2. **Period detection.** Once the history (float32 on the sampling grid, at most
   `MAX_HISTORY` cells) holds three cycles of a candidate period (a day, a week; a
   period is a candidate only if it spans at least four sampling intervals), the
   detector decomposes it (centred moving average for the trend, per-phase medians for
   the season) and keeps a period whose seasonal strength
   `1 - var(remainder) / var(detrended)`, corrected for the `1/k` share of the variance
   a profile fitted to `k` cycles explains even in pure noise, is at least
   `min_strength`. A week is tested on what the daily season leaves. Until a decision
   it re-tests each new cycle of data, up to `max_checks` times; `period` in the
   parameters (`auto`, `none`, `1d`, `1w`, `1d+1w`) can also fix it (a fixed cycle is
   learned from two of it in the history, so a week needs points about five minutes
   apart or more; a cycle that cannot be learned is left out and `periods` says so).
3. **Online model** (O(1) per point): `expected = level + daily[phase] + weekly[phase]`.
   The residual updates level, profiles and a robust scale (an exponentially weighted
   mean absolute residual) with Huber-clipped steps, so an outlier moves nothing much.
4. **Three surprises** of the standardised residual `z = residual / scale`:
   the point itself (`|z|`), a short exponentially weighted mean of the clipped `z`
   (a level shift or a broken season: many moderate residuals on one side) and a longer
   weighted mean of the clipped `z²` (more variance, denser spikes), the last two
   divided by their own long-run spread. On sampling of a quarter hour or finer, the
   point's `|z|` is first measured against a **daily envelope**: per time of day (5-minute
   phases at most), the largest recent `|z|` on each side, fading by 0.8 a day. An
   excursion no larger than the envelope within 15 minutes of this time of day (the same
   time on recent days, or the minutes just before) counts as `2 |z| / envelope`, so a daily
   job that drifts by minutes, or the rest of a burst, is routine, while the same spike at
   another time of day, or one much larger, is not.
5. **Calibration** (peaks over threshold): each surprise `a` is compared with this
   series' own history of that surprise. Above `TAIL_START` its tail is modelled as
   exponential, `P(A > a) = rate * exp(-(a - TAIL_START) / excess)`, with the exceedance
   rate and the mean excess learned online (starting from a normal tail, made heavier so
   a cold start does not alarm). A spiky series has a high rate and a long excess, so
   its routine spikes are routine; a quiet one that starts to misbehave is not. The
   point tails learn their excess in the data's units (how far beyond `TAIL_START`
   robust sigmas), not in sigmas: the scale follows the bulk of the points, and on a
   reading that goes flat it shrinks without end, so the same spike would be ever more
   sigmas away and never become routine. Their prior stays in sigmas, following the
   scale, with the share it would have in the running mean of the exceedances. The
   point and the shift surprises have a tail per side (above and below the model; `p`
   is the side's, doubled): metrics are rarely symmetric, and a series whose spikes go
   up has not shown that a drop is routine. The expected band is where a point alone
   would alarm on each side, so it may reach further above than below. A point
   exceedance counts toward its tail's rate at once but teaches its size only
   `DELAY_SLOTS` points later, so the points right after an outlier, the rest of one
   incident, are not scored against a tail it has just made heavier.
6. **Score.** `L = log10(1/p)` of the smallest of the three tail probabilities, times
   three (Bonferroni), and `score = L / (L + 6)`: monotone in `p`, so one threshold
   means the same on every series (0.5 is `p = 1e-6`). A point is anomalous when its
   score reaches the threshold (0.5 at the default `sensitivity` 0.5; higher
   sensitivity = lower threshold = more alerts).
7. **One alert per incident (burst suppression).** A point whose `L` reaches a third
   of the alarm level opens an incident (or keeps it open); it closes after
   `refractory` points below that level (36: three quiet hours at 5-minute sampling).
   Inside an open incident a point scores 0 unless its `L` is at least 1.5 times the
   incident's worst so far, so a continuing anomaly is reported once and only a clear
   escalation scores again. The score is new evidence; the verdict's `anomalous` flag
   is the point's own state (beyond the alarm level, suppressed or not), so an alert
   stays firing while the incident lasts.
8. **Level shifts.** `shift_after` points in a row on one side that are point alarms,
   or beyond `SURPRISE_CLIP` robust sigmas whatever the tails say (one huge spike makes
   them heavy enough to hide a shift that follows), and that agree with each other
   (their spread is at most their median: a plateau, not a burst), are a new level. The
   detector reports it (`changepoint_at` = the run's first point, kind `level_shift`,
   anomalous, scored by the shift's size in robust sigmas under a normal model, since a
   new level is news whatever incident is open) and moves the level by the run's median
   residual. Points of such runs teach the scale nothing, so a scale that is far too
   small (a reading flat while warming up, then noisy) could never grow: twice
   `shift_after` of them in a row, on both sides, restart level and scale from their
   residuals (the points keep their own verdicts).

Cold start: the first `warmup` points only set level and scale (score 0). Until a period
is decided the model is level-only, its scale the larger of the MAD- and mean-absolute-
deviation estimates of the first points (so an unmodelled cycle is not an outlier). The
tails start from a heavier-than-normal prior worth `TAIL_PRIOR_POINTS` points. When a
season is installed, level and scale restart from what it leaves of the history (the
scale corrected for the noise an in-sample profile absorbs). Tails learn from every
point, anomalies included, so a series' new normal stops alerting.

Late or duplicate points (event time not after the last one) are scored as a point
against the current model and teach it nothing; missing values (None, NaN) give no
verdict.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from lupus_stream.detection import seasonal_steady as steady
from lupus_stream.detection.base import Detector, Verdict, VerdictBatch
from lupus_stream.detection.season_profile import cycle_bins, decompose, median, phase_of

DAY = 86400.0
WEEK = 7 * DAY
MAD_TO_SIGMA = 1.4826
MEAN_ABS_TO_SIGMA = 1.2533
HALF_SCORE_LOG10_P = 6.0  # score 0.5 at p = 1e-6
INTERVAL_SAMPLES = 16
MAX_HISTORY = 4096  # raw points kept for the period decision (a fortnight of 5-min data)
MIN_POINTS_PER_CYCLE = 4  # a period is a candidate only if it holds this many intervals
MIN_CYCLES = 3  # cycles of history before a period is tested
TAIL_START = 2.0  # surprise beyond which the tail is learned rather than assumed
TAIL_PRIOR_RATE = math.erfc(TAIL_START / math.sqrt(2.0))  # a normal tail to start from
TAIL_PRIOR_EXCESS = 0.6  # a normal's mean excess beyond 2 is 0.37: start heavier
TAIL_PRIOR_POINTS = 200.0  # weight of the prior rate, in points
TAIL_PRIOR_EXCEEDANCES = 10.0  # weight of the prior excess, in exceedances
SURPRISE_CLIP = 6.0  # |z| is clipped here before entering the windowed surprises
ENVELOPE_BINS = 288  # daily envelope of excursions: 5-minute phases at the finest
ENVELOPE_JITTER = 900.0  # seconds: an excursion counts for this far around its time of day
ENVELOPE_DECAY = 0.8  # per day: the envelope remembers an excursion for a few days
ENVELOPE_MIN = SURPRISE_CLIP  # only an envelope beyond this |z| makes an excursion routine
COMPONENTS = 3
NOTE_FRACTION = 1.0 / 3.0  # a surprise this fraction of the alarm level opens an incident
ESCALATION = 1.5  # inside an incident, log10(1/p) must grow by this factor to alert again
LOG10_COMPONENTS = math.log10(COMPONENTS)
LN10 = math.log(10.0)
_FLOAT = struct.Struct("<f")
_NAN = _FLOAT.pack(math.nan)
_copysign, _log10, _sqrt = math.copysign, math.log10, math.sqrt

Period = Literal["auto", "none", "1d", "1w", "1d+1w"]


class SeasonalParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Sensitivity, period choice, adaptation rates, surprise windows, incident length."""

    sensitivity: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5
    period: Period = "auto"
    min_strength: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.6
    max_checks: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    level_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.1
    season_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.1
    scale_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.02
    clip: Annotated[float, msgspec.Meta(gt=0.0)] = 3.0
    warmup: Annotated[int, msgspec.Meta(ge=3, le=1000)] = 12
    shift_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.2
    spread_rate: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.02
    memory: Annotated[int, msgspec.Meta(ge=10, le=1_000_000)] = 2000
    refractory: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 36
    shift_after: Annotated[int, msgspec.Meta(ge=1)] = 3

    @property
    def threshold(self) -> float:
        """Score above which a point is anomalous: 0.5 at the default sensitivity."""
        return 0.75 - 0.5 * self.sensitivity


class SeasonalState(msgspec.Struct):
    """Learned model: interval, period decision, level, profiles, scale, tails, incident."""

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
    # daily envelope (sampling of ENVELOPE_JITTER or finer): per time of day, the largest
    # recent z above (up) and below (down) the model, fading by ENVELOPE_DECAY a day
    env_up: list[float] = []
    env_down: list[float] = []
    ready: bool = False
    history: bytearray = bytearray()  # float32 values on the sampling grid (NaN = gap)
    history_t0: float = 0.0  # event time of the first history cell
    # windowed surprises: short mean of clipped z, its long-run mean square; long mean of
    # clipped z^2, its long-run mean and variance
    shift: float = 0.0
    shift_ms: float = 0.0
    spread: float = 1.0
    spread_mean: float = 1.0
    spread_var: float = 0.0
    # tails (peaks over TAIL_START) of the three surprises: exceedance rate, mean excess
    # (of the point tails: what their exceedances taught, in the data's units)
    rate: list[float] = []
    excess: list[float] = []
    exceeded: list[float] = []
    # the share of the prior (in robust sigmas) in each point tail's mean excess
    prior_up: float = 1.0
    prior_down: float = 1.0
    # point exceedances whose size the tails learn later: (tail or -1, size) per slot,
    # the slot of point n being n % DELAY_SLOTS
    pending: list[float] = []
    # the open incident: its worst log10(1/p) and points left before it closes
    peak: float = 0.0
    # how many mean excesses beyond TAIL_START sigmas a point alone alarms, above and
    # below the model (the expected band)
    band_up: float = 0.0
    band_down: float = 0.0
    open_for: int = 0
    run_ts: list[float] = []
    run_res: list[float] = []
    run_side: int = 0
    # residuals of the points in a row that joined a run, on either side
    wild_res: list[float] = []


class SeasonalDetector(Detector[SeasonalParams, SeasonalState]):
    """Calibrated tail scores of an online seasonal-trend model, with period detection.

    >>> import math
    >>> d = SeasonalDetector()
    >>> hour = 3600.0
    >>> _ = [d.update(i * hour, 100 + 30 * math.sin(2 * math.pi * i / 24) + (i * 7 % 5))
    ...      for i in range(24 * 5)]
    >>> d.periods  # found the daily cycle
    '1d'
    >>> d.update(24 * 5 * hour, 100 + 30 * math.sin(0) + 80).anomalous
    True
    """

    kind = "seasonal"
    version = 7
    Params = SeasonalParams
    State = SeasonalState
    _state: SeasonalState
    _work: np.ndarray | None  # the state as the compiled path left it, when newer
    _history: np.ndarray  # and its period-decision history, while undecided

    def __init__(self, params: SeasonalParams | None = None, state: SeasonalState | None = None):
        super().__init__(params, state)
        p = self.params
        self._threshold = p.threshold
        self._alarm = HALF_SCORE_LOG10_P * self._threshold / (1.0 - self._threshold)
        self._note = NOTE_FRACTION * self._alarm
        self._tail_rate = 1.0 / p.memory
        self._excess_rate = 10.0 / p.memory
        self._season_step = p.season_rate * (1.0 - p.level_rate)
        self._warmup = p.warmup
        # the constants of a point's update, unpacked into locals in one step
        self._rates = (
            p.shift_rate,
            p.spread_rate,
            self._tail_rate,
            1.0 - self._tail_rate,
            self._alarm,
            self._note,
            p.refractory,
            p.clip,
            p.level_rate,
            self._season_step,
            p.scale_rate,
        )
        # the envelope's reach and fading, for (bins, interval): derived, not state, so
        # they are recomputed whenever either changes (the interval does while it is
        # being estimated) and a restored detector goes on as the original does
        self._env_bins, self._env_interval, self._env_reach, self._env_keep = 0, 0.0, 0, 1.0
        self._env_len = 0  # envelope bins of the state while the vector holds its lists
        consts = np.zeros(steady.CONSTS)
        for index, value in (
            (steady.SHIFT_RATE, p.shift_rate),
            (steady.SPREAD_RATE, p.spread_rate),
            (steady.TAIL_RATE, self._tail_rate),
            (steady.TAIL_KEEP, 1.0 - self._tail_rate),
            (steady.ALARM, self._alarm),
            (steady.NOTE, self._note),
            (steady.REFRACTORY, p.refractory),
            (steady.CLIP, p.clip),
            (steady.LEVEL_RATE, p.level_rate),
            (steady.SEASON_STEP, self._season_step),
            (steady.SCALE_RATE, p.scale_rate),
            (steady.EXCESS_RATE, self._excess_rate),
        ):
            consts[index] = value
        self._consts = consts
        self._candidates_for: float | None = None  # the interval `_day_week` is for
        self._day_week = (0, 0)
        s = self.state
        if not s.rate:
            s.rate = [TAIL_PRIOR_RATE / 2.0] * steady.TAILS  # a side: half the normal tail
            s.rate[steady.SPREAD_UP] = TAIL_PRIOR_RATE
            s.excess = [TAIL_PRIOR_EXCESS] * steady.TAILS
            s.excess[steady.POINT_UP] = s.excess[steady.POINT_DOWN] = 0.0  # all prior
            s.exceeded = [0.0] * steady.TAILS
            s.pending = [-1.0, 0.0] * steady.DELAY_SLOTS
            s.shift_ms = p.shift_rate / (2.0 - p.shift_rate)  # of normal z
            s.spread_var = 2.0 * p.spread_rate / (2.0 - p.spread_rate)  # of normal z^2
            s.band_up, s.band_down = self._band(steady.POINT_UP), self._band(steady.POINT_DOWN)

    @property
    def periods(self) -> str | None:
        """The seasonality found: `1d`, `1w`, `1d+1w`, `none`, or None while undecided."""
        s = self.state
        found = "+".join(name for name, bins in (("1d", s.day_bins), ("1w", s.week_bins)) if bins)
        if found:
            return found
        return "none" if s.decided else None

    def season_at(self, t: float) -> float:
        """The model's seasonal part (daily plus weekly profile) at event time `t`; 0
        without a season."""
        s = self.state
        cycle = 0.0
        if s.day_bins:
            cycle += s.daily[phase_of(t, DAY, s.day_bins)]
        if s.week_bins:
            cycle += s.weekly[phase_of(t, WEEK, s.week_bins)]
        return cycle

    # -- batches -------------------------------------------------------------------

    native_batch = True

    @classmethod
    def update_batches(
        cls,
        detectors: Sequence[SeasonalDetector],
        ts: Sequence[Sequence[float]],
        xs: Sequence[Sequence[Any]],
    ) -> list[VerdictBatch]:
        """`update` on every point, all or nothing: a steady series' points go through the
        compiled update (see `seasonal_steady`; the series with decided periods in one
        call), the rest through `update` itself."""
        if not len(detectors) == len(ts) == len(xs):
            raise ValueError("update_batches: as many time and value lists as detectors")
        if len({id(d) for d in detectors}) != len(detectors):
            raise ValueError("update_batches: a detector appears twice")
        bounds = [0]
        for t, x in zip(ts, xs, strict=True):
            if len(t) != len(x):
                raise ValueError(f"update_batch: {len(t)} times for {len(x)} values")
            bounds.append(bounds[-1] + len(t))
        before = [(d._state, d._work, d._history) for d in detectors]
        try:
            times = np.fromiter(itertools.chain.from_iterable(ts), np.float64, bounds[-1])
            values = _as_floats(list(itertools.chain.from_iterable(xs)))
            out = np.zeros((bounds[-1], steady.COLUMNS))
            ran = _run_together(detectors, bounds, times, values, out)
            made = [
                d._batch(ts[j], xs[j], times[b:e], values[b:e], out[b:e], ran.get(j))
                for j, (d, b, e) in enumerate(zip(detectors, bounds, bounds[1:], strict=False))
            ]
            status = out[:, steady.STATUS].astype(np.int64).tolist()
            return [
                _SeasonalBatch(status[b:e], by_point, out[b:e], values[b:e])
                for by_point, b, e in zip(made, bounds, bounds[1:], strict=False)
            ]
        except BaseException:
            for detector, (state, work, history) in zip(detectors, before, strict=True):
                detector._state, detector._work, detector._history = state, work, history
            raise

    def _batch(
        self,
        ts: Sequence[float],
        xs: Sequence[Any],
        times: np.ndarray,
        values: np.ndarray,
        out: np.ndarray,
        ran: int | None,
    ) -> dict[int, Verdict | None]:
        """The points of one series, from where an earlier compiled run stopped (`ran`)
        or from the first: rows of `out` from the compiled path, and the verdicts of the
        points the reference path made, returned by position. Never changes the state it
        starts from: the compiled path writes a new state vector, the reference path
        works on a deep copy."""
        n = len(ts)
        made: dict[int, Verdict | None] = {}
        owned = False  # the state is a deep copy this batch may change in place
        pending = ran is not None  # point i has a row from the compiled path
        i = ran or 0
        while i < n:
            if not pending and (self._work is not None or self._steady_state()):
                i, pending = self._compiled(times, values, i, out), True
                continue
            if not owned:
                self._state, owned = _deep_copy(self.state), True
            if pending and out[i, steady.STATUS] == steady.IN_RUN:
                made[i] = self._finish_run(ts[i], float(values[i]), out[i])
            else:
                made[i] = self.update(ts[i], xs[i])
            i, pending = i + 1, False
        return made

    def _steady_state(self) -> bool:
        """Past warm-up and the interval decision, and the period decided or its next
        check known: the compiled update applies."""
        s = self._state
        if not (s.ready and s.n > INTERVAL_SAMPLES):
            return False
        return s.decided or (s.interval > 0.0 and self._check_at() > 0)

    def _check_at(self) -> int:
        """History cells at which `_remember` next decides something (0: unknown)."""
        s, period = self._state, self.params.period
        if period == "auto":
            return s.next_check
        if period == "none":
            return 0
        return 2 * max(self._fixed_bins())

    def _fixed_bins(self) -> tuple[int, int]:
        """Bins of the day and the week a fixed `period` asks for, at this sampling
        interval (0: not asked for, or not learnable: fewer than four points a cycle, or
        two cycles longer than the history holds, as a week of points a minute apart)."""
        interval, period = self._state.interval, self.params.period
        day = _learnable_bins(DAY, interval, 2) if "1d" in period else 0
        return day, _learnable_bins(WEEK, interval, 2) if "1w" in period else 0

    def _compiled(self, times: np.ndarray, values: np.ndarray, start: int, out: np.ndarray) -> int:
        """The compiled update from `start`, into a new state vector; returns where it
        stopped."""
        work, history = self._working()
        s = self._state
        new = np.empty_like(work)
        stop: int = steady.run(
            times,
            values,
            start,
            work,
            new,
            s.day_bins,
            s.week_bins,
            self._env_count(),
            history,
            self._consts,
            out,
        )
        self._history = history
        self._keep_vector(new)
        return stop

    def _env_count(self) -> int:
        """Envelope bins of the state, whether the struct or the vector holds them."""
        return self._env_len if self._work is not None else len(self._state.env_up)

    def _keep_vector(self, work: np.ndarray) -> None:
        """Make `work` the state. On the way from the struct, the struct drops what the
        vector now holds (profiles, envelope, history: most of a series' memory) and
        `state` brings it back when read."""
        if self._work is None:
            s = self._state
            self._env_len = len(s.env_up)
            self._state = msgspec.structs.replace(
                s, daily=[], weekly=[], env_up=[], env_down=[], history=bytearray()
            )
        self._work = work

    def _working(self) -> tuple[np.ndarray, np.ndarray]:
        """The state vector and the history the compiled path starts from (the history
        a copy: the starting state stays as it was), with the constants up to date."""
        work, history = self._work, self._history
        s = self._state
        if work is None:
            work = self._to_vector(s)
            check_at = work[steady.CHECK_AT] = self._check_at()
            history = _EMPTY_HISTORY
            if not s.decided:
                # the compiled update stops before the history reaches `check_at` cells;
                # past MAX_HISTORY it may hold a capped gap more before dropping cells
                cells = len(s.history) // 4
                capacity = steady.HISTORY_CAPACITY
                if 0 < check_at <= steady.MAX_HISTORY:
                    capacity = max(check_at, cells + 1)
                history = np.empty(capacity, dtype=np.float32)
                history[:cells] = np.frombuffer(s.history, dtype="<f4")
        elif history.shape[0]:
            history = history.copy()
        env_bins = self._env_count()
        if env_bins and (self._env_bins != env_bins or self._env_interval != s.interval):
            self._env_setup(env_bins)
        consts = self._consts
        consts[steady.ENV_REACH], consts[steady.ENV_KEEP] = self._env_reach, self._env_keep
        return work, history

    @staticmethod
    def _to_vector(s: SeasonalState) -> np.ndarray:
        scalars = (
            s.n,
            s.t_last,
            s.level,
            s.scale,
            s.shift,
            s.spread,
            s.shift_ms,
            s.spread_mean,
            s.spread_var,
            s.band_up,
            s.band_down,
            s.peak,
            s.open_for,
            s.run_side,
            s.interval,
            len(s.history) // 4,
            s.history_t0,
            0,  # CHECK_AT
            s.prior_up,
            s.prior_down,
        )
        return np.array(
            [
                *scalars,
                *s.rate,
                *s.excess,
                *s.exceeded,
                *s.pending,
                *s.daily,
                *s.weekly,
                *s.env_up,
                *s.env_down,
            ],
            dtype=np.float64,
        )

    @property
    def state(self) -> SeasonalState:
        """The state struct, brought up to date with the compiled path's vector."""
        work = self._work
        if work is not None:
            self._work = None  # the caller may change the struct: the vector is stale
            self._state = _from_vector(self._state, work, self._history, self._env_len)
        return self._state

    @state.setter
    def state(self, value: SeasonalState) -> None:
        self._state, self._work, self._history = value, None, _EMPTY_HISTORY

    def _finish_run(self, t: float, value: float, row: np.ndarray) -> Verdict:
        """What `update` does after the compiled part, for a point of a level-shift run."""
        s = self.state
        expected, raw = float(row[steady.EXPECTED]), row[steady.RAW]
        detail = _detail(
            float(row[steady.Z]),
            expected,
            int(row[steady.BEST]),
            float(raw),
            bool(s.day_bins or s.week_bins),
        )
        return self._run(
            float(t),
            value,
            expected,
            expected - float(row[steady.BELOW]),
            expected + float(row[steady.ABOVE]),
            float(row[steady.RESIDUAL]),
            float(row[steady.SCORE]),
            bool(raw >= self._alarm),
            detail,
        )

    # -- model -----------------------------------------------------------------------

    def update(self, t: float, x: Any) -> Verdict | None:
        if x is None:
            return None
        t, value = float(t), float(x)
        if value - value != 0.0:  # NaN or infinite
            return None
        s = self.state
        t_last = s.t_last
        if t_last is not None and not t > t_last:  # late or duplicate: learns nothing
            if not s.ready:
                return Verdict(
                    0.0, False, value, detail=f"warming up ({len(s.warm)}/{self._warmup})"
                )
            return self._late(t, value)
        n = s.n
        if n <= INTERVAL_SAMPLES:
            self._observe_time(t)
        else:
            s.t_last = t
        s.n = n = n + 1
        if not s.decided:
            self._remember(t, value)
        if not s.ready:
            warm = s.warm
            warm.append(value)
            if len(warm) >= self._warmup:
                self._start_level()
            return Verdict(0.0, False, value, detail=f"warming up ({len(s.warm)}/{self._warmup})")

        slot = 2 * (n % steady.DELAY_SLOTS)
        if s.pending[slot] >= 0.0:  # the point exceedance of DELAY_SLOTS points ago
            self._learn_excess(int(s.pending[slot]), s.pending[slot + 1])
            s.pending[slot] = -1.0

        # expected value and standardised residual
        level, state_scale, day_bins, week_bins = s.level, s.scale, s.day_bins, s.week_bins
        dph, wph, expected, scale = self._model_at(t)
        residual = value - expected
        z = residual / scale
        lower, upper = _band_edges(s, expected, scale)

        # the three surprises, each against its own tail (the point's and the shift's
        # on their side: a series whose spikes go up has not shown how it drops)
        a0 = abs(z)
        if s.env_up:  # an excursion like the recent ones at this time of day is routine
            a0 = self._envelope(t, z, a0)
        (
            shift_rate,
            spread_rate,
            r,
            keep_r,
            alarm_level,
            note_level,
            refractory,
            clip,
            level_rate,
            season_step,
            scale_rate,
        ) = self._rates
        zc = _copysign(a0 if a0 < SURPRISE_CLIP else SURPRISE_CLIP, z)
        shift = s.shift
        shift = shift + shift_rate * (zc - shift)
        spread = s.spread
        spread = spread + spread_rate * (zc * zc - spread)
        shift_ms, spread_mean, spread_var = s.shift_ms, s.spread_mean, s.spread_var
        a1 = abs(shift) / _sqrt(shift_ms)
        a2 = (spread - spread_mean) / _sqrt(spread_var + 1e-12)
        k0 = steady.POINT_UP if z > 0.0 else steady.POINT_DOWN
        k1 = steady.SHIFT_UP if shift > 0.0 else steady.SHIFT_DOWN
        rate = s.rate
        raw = 0.0
        best = -1
        if a0 > TAIL_START or a1 > TAIL_START or a2 > TAIL_START:
            # a side's tail probability, doubled: as likely on either side
            excess = s.excess
            if a0 > TAIL_START:
                e0 = _point_excess(s, k0, scale)
                raw = (a0 - TAIL_START) * scale / (e0 * LN10) - _log10(2.0 * rate[k0])
                best = 0
            if a1 > TAIL_START:
                q = (a1 - TAIL_START) / (excess[k1] * LN10) - _log10(2.0 * rate[k1])
                if q > raw:
                    raw, best = q, 1
            if a2 > TAIL_START:
                k2 = steady.SPREAD_UP
                q = (a2 - TAIL_START) / (excess[k2] * LN10) - _log10(rate[k2])
                if q > raw:
                    raw, best = q, 2
            exceeded = True
        else:
            exceeded = False
        raw -= LOG10_COMPONENTS  # Bonferroni over the three surprises
        if raw < 0.0:
            raw = 0.0
        alarm = raw >= alarm_level

        # one alert per incident
        lp = raw
        if raw >= note_level:
            if s.open_for > 0:
                peak = s.peak
                if raw < ESCALATION * peak:
                    lp = 0.0
                if raw > peak:
                    s.peak = raw
            else:
                s.peak = raw
            s.open_for = refractory
        else:
            open_for = s.open_for
            if open_for > 0:
                s.open_for = open_for - 1
                lp = 0.0
        score = _score(lp)
        anomalous = alarm  # the point is beyond the alarm level, new evidence or not

        # learn: windowed surprises, their spreads, the tails (every point, so a new
        # normal becomes normal), then level, season and scale with clipped steps
        s.shift, s.spread = shift, spread
        s.shift_ms = shift_ms + r * (shift * shift - shift_ms)
        delta = spread - spread_mean
        s.spread_mean = spread_mean + r * delta
        s.spread_var = keep_r * (spread_var + r * delta * delta)
        w = 1.0 / (n + TAIL_PRIOR_POINTS)
        if w < r:
            w = r
        if exceeded:
            self._learn_tails(w, (k0, a0), (k1, a1), (steady.SPREAD_UP, a2))
            if a0 > TAIL_START:  # its size: once the points right after it are scored
                s.pending[slot], s.pending[slot + 1] = float(k0), (a0 - TAIL_START) * scale
        else:
            keep = 1.0 - w
            for k in range(steady.TAILS):
                rate[k] *= keep
        limit = clip * scale
        step = residual if -limit <= residual <= limit else _copysign(limit, residual)
        s.level = level + level_rate * step
        if dph >= 0:
            if wph >= 0:
                seasonal_step = season_step * step
                s.daily[dph] += 0.5 * seasonal_step
                s.weekly[wph] += 0.5 * seasonal_step
            else:
                s.daily[dph] += season_step * step
        elif wph >= 0:
            s.weekly[wph] += season_step * step
        # a point alarm, or a point beyond SURPRISE_CLIP robust sigmas whatever the tails
        # say (a huge spike makes them heavy), counts toward a level-shift run
        in_run = (alarm and best == 0) or a0 > SURPRISE_CLIP
        if not in_run:
            s.scale = state_scale + scale_rate * (MEAN_ABS_TO_SIGMA * abs(step) - state_scale)
            if s.run_side:
                s.run_ts, s.run_res, s.run_side, s.wild_res = [], [], 0, []
        if not in_run and not anomalous:
            return Verdict(score, False, value, expected, lower, upper)
        detail = _detail(z, expected, best, raw, bool(day_bins or week_bins))
        if not in_run:
            return Verdict(score, True, value, expected, lower, upper, detail=detail)
        return self._run(t, value, expected, lower, upper, residual, score, anomalous, detail)

    def _model_at(self, t: float) -> tuple[int, int, float, float]:
        """(daily phase, weekly phase (-1: none), expected value, scale with its floor)
        at time `t`."""
        s = self.state
        dph = wph = -1
        expected = s.level
        if s.day_bins:
            dph = int((t % DAY) / DAY * s.day_bins) % s.day_bins
            expected += s.daily[dph]
        if s.week_bins:
            wph = int((t % WEEK) / WEEK * s.week_bins) % s.week_bins
            expected += s.weekly[wph]
        scale = s.scale
        floor = 1e-6 * abs(expected)
        if scale < floor:
            scale = floor
        if scale < 1e-9:
            scale = 1e-9
        return dph, wph, expected, scale

    def _late(self, t: float, value: float) -> Verdict:
        """A late or duplicate point: scored as a point against the current model."""
        s = self.state
        _, _, expected, scale = self._model_at(t)
        z = (value - expected) / scale
        rate = s.rate
        a = abs(z)
        lp = 0.0
        if a > TAIL_START:
            k = steady.POINT_UP if z > 0.0 else steady.POINT_DOWN
            e = _point_excess(s, k, scale)
            lp = (a - TAIL_START) * scale / (e * LN10) - math.log10(2.0 * rate[k])
            lp -= LOG10_COMPONENTS
        if s.open_for > 0 and lp < ESCALATION * s.peak:
            lp = 0.0
        score = _score(lp) if lp > 0.0 else 0.0
        lower, upper = _band_edges(s, expected, scale)
        return Verdict(
            score,
            score >= self._threshold,
            value,
            expected,
            lower,
            upper,
            detail="late point, scored against the current model",
        )

    def _envelope(self, t: float, z: float, a: float) -> float:
        """The point surprise `a = |z|`, relative to the envelope of excursions on the same
        side within `ENVELOPE_JITTER` of this time of day (the last minutes, and the same
        time on recent days), then learn it.

        An excursion no larger than what came at about this time lately (a daily job that
        drifts by minutes, the rest of a burst) counts as `TAIL_START * a / envelope`: as
        surprising as twice the envelope is twice the tail's start.
        """
        s = self.state
        env = s.env_up if z > 0.0 else s.env_down
        bins = len(env)
        if self._env_bins != bins or self._env_interval != s.interval:
            self._env_setup(bins)
        ph = int((t % DAY) / DAY * bins) % bins
        out = a
        if a > TAIL_START:
            j = self._env_reach
            if j < ph < bins - j:
                seen = max(env[ph - j : ph + j + 1])
            else:
                seen = max(env[k % bins] for k in range(ph - j, ph + j + 1))
            if seen >= ENVELOPE_MIN:
                discounted = TAIL_START * a / seen
                if discounted < out:
                    out = discounted
        e = env[ph] * self._env_keep
        env[ph] = a if a > e else e
        return out

    def _env_setup(self, bins: int) -> None:
        width = DAY / bins
        self._env_bins, self._env_interval = bins, self._state.interval
        self._env_reach = round(ENVELOPE_JITTER / width)
        # each visit fades its phase by the share of a day's decay it stands for
        self._env_keep = ENVELOPE_DECAY ** (min(self._state.interval, width) / width)

    def _rescale_point_tails(self, factor: float) -> None:
        """Multiply what the point tails learned in the data's units by `factor`, when
        the scale restarts under a new model (it was learned on the old one's residuals:
        kept relative to its scale)."""
        s = self.state
        for k in (steady.POINT_UP, steady.POINT_DOWN):
            s.excess[k] *= factor
        pending = s.pending
        for j in range(0, len(pending), 2):
            if pending[j] >= 0.0:
                pending[j + 1] *= factor

    def _learn_tails(
        self,
        w: float,
        point: tuple[int, float],
        shift: tuple[int, float],
        spread: tuple[int, float],
    ) -> None:
        """One point of the peaks-over-threshold estimates: each surprise (tail, value)
        teaches its tail; the other side's tails only see that they were not exceeded.
        The size of a point exceedance is learned later (`pending`), the rest now."""
        s = self.state
        rate = s.rate
        seen = [0.0] * steady.TAILS
        for k, a in (point, shift, spread):
            seen[k] = a
        for k, a in enumerate(seen):
            if a > TAIL_START:
                rate[k] += w * (1.0 - rate[k])
                if k != point[0]:
                    self._learn_excess(k, a - TAIL_START)
            else:
                rate[k] -= w * rate[k]
        if point[1] > TAIL_START:
            s.band_up, s.band_down = self._band(steady.POINT_UP), self._band(steady.POINT_DOWN)

    def _learn_excess(self, k: int, size: float) -> None:
        """One exceedance of tail `k`, `size` beyond its start: its count and mean excess
        (of a point tail: the prior's share shrinks as it would in the running mean, and
        the rest of the mean is what the exceedances taught)."""
        s = self.state
        s.exceeded[k] += 1.0
        v = 1.0 / (s.exceeded[k] + TAIL_PRIOR_EXCEEDANCES)
        if v < self._excess_rate:
            v = self._excess_rate
        if k == steady.POINT_UP or k == steady.POINT_DOWN:
            prior = s.prior_up if k == steady.POINT_UP else s.prior_down
            left = (1.0 - v) * prior
            s.excess[k] = ((1.0 - v) * (1.0 - prior) * s.excess[k] + v * size) / (1.0 - left)
            if k == steady.POINT_UP:
                s.prior_up = left
                s.band_up = self._band(k)
            else:
                s.prior_down = left
                s.band_down = self._band(k)
        else:
            s.excess[k] += v * (size - s.excess[k])

    def _band(self, tail: int) -> float:
        """How many of its mean excesses beyond `TAIL_START` robust sigmas a point alone
        reaches the alarm level on a side."""
        need = self._alarm + LOG10_COMPONENTS + math.log10(2.0 * self.state.rate[tail])
        return LN10 * max(need, 0.0)

    def _run(
        self,
        t: float,
        value: float,
        expected: float,
        lower: float,
        upper: float,
        residual: float,
        score: float,
        anomalous: bool,
        detail: str,
    ) -> Verdict:
        """Track runs of point alarms on one side; `shift_after` of them move the level.
        Twice as many in a row on both sides say the scale is wrong: both restart."""
        p, s = self.params, self.state
        side = 1 if residual > 0 else -1
        wild = s.wild_res
        wild.append(residual)
        if len(wild) >= 2 * p.shift_after and min(wild) < 0.0 < max(wild):
            residuals = np.asarray(wild)
            center = median(residuals)
            deviation = np.abs(residuals - center)
            s.level += center
            s.scale = max(
                s.scale,
                MAD_TO_SIGMA * median(deviation),
                MEAN_ABS_TO_SIGMA * float(np.mean(deviation)),
            )
            s.run_ts, s.run_res, s.run_side, s.wild_res = [], [], 0, []
            return Verdict(score, anomalous, value, expected, lower, upper, detail=detail)
        if side != s.run_side:
            s.run_ts, s.run_res, s.run_side = [], [], side
        s.run_ts.append(t)
        s.run_res.append(residual)
        if len(s.run_res) < p.shift_after:
            return Verdict(score, anomalous, value, expected, lower, upper, detail=detail)
        shift = float(np.median(s.run_res))
        if max(s.run_res) - min(s.run_res) > abs(shift):  # a burst, not a new level
            del s.run_ts[0], s.run_res[0]
            return Verdict(score, anomalous, value, expected, lower, upper, detail=detail)
        start = s.run_ts[0]
        s.level += shift
        s.run_ts, s.run_res, s.run_side, s.wild_res = [], [], 0, []
        # a new level is news whatever the open incident: scored by its size in robust
        # sigmas under a normal model, the tails' verdict on single points aside
        sigma = abs(shift) / max(s.scale, 1e-9)
        lp = -_log10_normal_tail(sigma) - LOG10_COMPONENTS
        shift_score = _score(lp) if lp > 0.0 else 0.0
        return Verdict(
            max(score, shift_score),
            True,
            value,
            expected,
            lower,
            upper,
            changepoint_at=start,
            kind="level_shift",
            detail=f"level shift of {shift:+.4g}; " + detail,
        )

    # -- start-up ----------------------------------------------------------------------

    def _observe_time(self, t: float) -> None:
        s = self.state
        t_last, gaps = s.t_last, s.gaps
        if t_last is not None and len(gaps) < INTERVAL_SAMPLES:
            gaps.append(t - t_last)
            s.interval = median(np.asarray(gaps, dtype=np.float64))
        s.t_last = t

    def _start_level(self) -> None:
        s = self.state
        warm = np.asarray(s.warm)
        s.level = float(np.median(warm))
        mad = float(np.median(np.abs(warm - s.level)))
        spread = float(np.mean(np.abs(warm - s.level)))
        s.scale = max(MAD_TO_SIGMA * mad, MEAN_ABS_TO_SIGMA * spread, 1e-9)
        s.ready, s.warm = True, []
        if 0.0 < s.interval <= ENVELOPE_JITTER:  # sampling that resolves the drift
            bins = min(cycle_bins(DAY, s.interval), ENVELOPE_BINS)
            s.env_up, s.env_down = [0.0] * bins, [0.0] * bins

    def _remember(self, t: float, value: float) -> None:
        """Keep raw history on the sampling grid for the period decision, then decide."""
        s = self.state
        interval = s.interval
        if interval <= 0.0 or len(s.gaps) < INTERVAL_SAMPLES:
            return
        history = s.history
        if not history:
            s.history_t0 = t
        count = len(history) // 4
        index = round((t - s.history_t0) / interval)
        try:
            cell = _FLOAT.pack(value)
        except OverflowError:  # beyond float32: a gap in the history, not a failure
            cell = _NAN
        if index < count:  # two points in one grid cell: keep the later one
            history[-4:] = cell
        else:
            if index > count:
                history += _NAN * min(index - count, MAX_HISTORY)
            history += cell
            s.history = history
        count = len(history) // 4
        if count > MAX_HISTORY:
            drop = count - MAX_HISTORY
            del history[: 4 * drop]
            s.history_t0 += drop * interval
            count = MAX_HISTORY
        period = self.params.period
        if period != "auto":
            self._fix_period(period, count)
            return
        if self._candidates_for != interval:
            self._candidates_for, self._day_week = interval, self._candidates()
        day, week = self._day_week
        if not day and not week:
            s.decided, s.history = True, bytearray()
            return
        if s.next_check == 0:
            s.next_check = MIN_CYCLES * (day or week)
        if count >= s.next_check:
            self._check_periods(day, week)

    def _candidates(self) -> tuple[int, int]:
        """Bins of a day and of a week at this sampling interval (0: not a candidate)."""
        interval = self.state.interval
        return _learnable_bins(DAY, interval, MIN_CYCLES), _learnable_bins(
            WEEK, interval, MIN_CYCLES
        )

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
        times = s.history_t0 + s.interval * np.arange(count)
        return (((times % period) / period) * bins).astype(int) % bins

    def _check_periods(self, day: int, week: int) -> None:
        p, s = self.params, self.state
        n = len(s.history) // 4
        values: np.ndarray | None = None  # the history, read only when a test needs it
        daily = weekly = None
        if day and n >= MIN_CYCLES * day and not s.day_bins:
            values = self._values()
            profile, strength, _ = decompose(values, day, self._phases(n, DAY, day))
            if strength >= p.min_strength:
                daily = profile
        elif s.day_bins:
            daily = np.asarray(s.daily)
        if week and n >= MIN_CYCLES * week:
            rest = values = self._values() if values is None else values
            if daily is not None:
                rest = values - daily[self._phases(n, DAY, len(daily))]
            profile, strength, _ = decompose(rest, week, self._phases(n, WEEK, week))
            if strength >= p.min_strength:
                weekly = profile
        s.checks += 1
        s.next_check = n + (day or week)
        can_grow = bool(week) and n < MIN_CYCLES * week
        if daily is None and weekly is None and (s.checks < p.max_checks or can_grow):
            return
        if daily is not None and weekly is None and can_grow:
            if not s.day_bins:
                assert values is not None
                self._install(values, daily, None)
            # a daily season is in place: the next test is the weekly one, once the
            # history holds enough weeks for it
            s.next_check = MIN_CYCLES * week
            return
        self._install(self._values() if values is None else values, daily, weekly)
        s.decided = True
        s.history = bytearray()

    def _fix_period(self, period: str, count: int) -> None:
        s = self.state
        day, week = (0, 0) if period == "none" else self._fixed_bins()
        if not day and not week:  # nothing to learn: decided, without a season
            s.decided, s.history = True, bytearray()
            return
        if count < self._check_at():
            return
        values = self._values()
        n = len(values)
        daily = weekly = None
        rest = values
        if day:
            daily, _, _ = decompose(values, day, self._phases(n, DAY, day))
            rest = values - daily[self._phases(n, DAY, day)]
        if week:
            weekly, _, _ = decompose(rest, week, self._phases(n, WEEK, week))
        self._install(values, daily, weekly)
        s.decided, s.history = True, bytearray()

    def _install(
        self, values: np.ndarray, daily: np.ndarray | None, weekly: np.ndarray | None
    ) -> None:
        """Adopt the profiles; restart level and scale from what they leave of the history.
        A profile that is not finite (a history of values beyond float32, all gaps) is
        not adopted."""
        s = self.state
        n = len(values)
        if daily is not None and not np.isfinite(daily).all():
            daily = None
        if weekly is not None and not np.isfinite(weekly).all():
            weekly = None
        changed = False
        if daily is not None and not s.day_bins:
            s.day_bins, s.daily = len(daily), daily.astype(float).tolist()
            changed = True
        if weekly is not None and not s.week_bins:
            s.week_bins, s.weekly = len(weekly), weekly.astype(float).tolist()
            changed = True
        if not changed:
            return
        rest = values.copy()
        if s.day_bins:
            rest -= np.asarray(s.daily)[self._phases(n, DAY, s.day_bins)]
        if s.week_bins:
            rest -= np.asarray(s.weekly)[self._phases(n, WEEK, s.week_bins)]
        recent = rest[-max(s.day_bins, s.week_bins, 8) :]
        s.level = median(recent)
        width = max(3, min(len(rest) // 4, 25))
        smooth = np.convolve(rest, np.ones(width) / width, mode="valid")
        remainder = rest[width // 2 : width // 2 + len(smooth)] - smooth
        deviation = np.abs(remainder - median(remainder))
        mad = median(deviation)
        mean_abs = float(np.mean(deviation))
        scale = max(MAD_TO_SIGMA * mad, MEAN_ABS_TO_SIGMA * mean_abs, 1e-9)
        # in-sample: a profile fitted to k cycles absorbs 1/k of the noise variance
        k = max((n - max(s.day_bins, s.week_bins)) / max(s.day_bins, s.week_bins), 1.5)
        before = s.scale  # 0 while warming up: nothing learned yet
        s.scale = scale * math.sqrt(k / (k - 1.0))
        if before > 0.0:
            self._rescale_point_tails(s.scale / before)


def _point_excess(s: SeasonalState, k: int, scale: float) -> float:
    """A point tail's mean excess at this scale, in the data's units: the prior (in
    robust sigmas, so it follows the scale) and what exceedances taught, by their
    shares."""
    prior = s.prior_up if k == steady.POINT_UP else s.prior_down
    return prior * TAIL_PRIOR_EXCESS * scale + (1.0 - prior) * s.excess[k]


def _band_edges(s: SeasonalState, expected: float, scale: float) -> tuple[float, float]:
    """The expected band: where a point alone would alarm, below and above."""
    start = TAIL_START * scale
    lower = expected - (start + _point_excess(s, steady.POINT_DOWN, scale) * s.band_down)
    upper = expected + (start + _point_excess(s, steady.POINT_UP, scale) * s.band_up)
    return lower, upper


def _learnable_bins(cycle: float, interval: float, cycles: int) -> int:
    """Bins of `cycle` at this sampling interval if it can be learned from `cycles` of
    it in the history (and has four points at least), else 0."""
    bins = cycle_bins(cycle, interval)
    fits = MIN_POINTS_PER_CYCLE * interval <= cycle and cycles * bins <= MAX_HISTORY
    return bins if fits else 0


def _detail(z: float, expected: float, best: int, raw: float, seasonal: bool) -> str:
    """What an anomalous point's verdict says: the surprise that spoke, and the residual."""
    detail = f"robust z {z:+.1f} from {expected:.4g}"
    if best >= 0:
        surprise = ("point", "shift", "spread")[best]
        detail = f"{surprise} surprise, p = 10^-{raw + LOG10_COMPONENTS:.1f}; {detail}"
    return detail if seasonal else detail + " (no season)"


def _score(lp: float) -> float:
    """The score of a surprise `lp = log10(1/p)`: 1 where p underflows to 0 (a finite
    value so far out that its z overflows)."""
    return lp / (lp + HALF_SCORE_LOG10_P) if lp < math.inf else 1.0


def _run_together(
    detectors: Sequence[SeasonalDetector],
    bounds: list[int],
    times: np.ndarray,
    values: np.ndarray,
    out: np.ndarray,
) -> dict[int, int]:
    """One compiled call for the steady series with decided periods (no history to
    keep) and points in this batch; returns where each stopped, by position."""
    together = [
        j
        for j, d in enumerate(detectors)
        if bounds[j + 1] > bounds[j]
        and d._state.decided
        and (d._work is not None or d._steady_state())
    ]
    if len(together) < 2:
        return {}
    chosen = [detectors[j] for j in together]
    works = [d._working()[0] for d in chosen]
    offsets = np.fromiter(itertools.accumulate(map(len, works), initial=0), np.int64)
    src = np.concatenate(works)
    dst = np.empty_like(src)
    points = np.array([(bounds[j], bounds[j + 1]) for j in together], dtype=np.int64)
    dims = np.array(
        [(d._state.day_bins, d._state.week_bins, d._env_count()) for d in chosen],
        dtype=np.int64,
    )
    consts = np.array([d._consts for d in chosen])
    stops = np.zeros(len(chosen), dtype=np.int64)
    steady.run_many(times, values, points, src, dst, offsets, dims, consts, out, stops)
    for d, o, f in zip(chosen, offsets.tolist(), offsets[1:].tolist(), strict=False):
        d._keep_vector(dst[o:f].copy())  # a view would keep every series' vector of the call
    return dict(zip(together, stops.tolist(), strict=True))


def _from_vector(
    s: SeasonalState, work: np.ndarray, history: np.ndarray, env: int
) -> SeasonalState:
    """A new state struct: `s` with what the compiled update wrote into `work` (with
    `env` envelope bins) and `history`."""
    v = work.tolist()
    tails = steady.SCALARS, steady.SCALARS + steady.TAILS, steady.SCALARS + 2 * steady.TAILS
    at = steady.SCALARS + 3 * steady.TAILS + 2 * steady.DELAY_SLOTS
    day, week = s.day_bins, s.week_bins
    fields: dict[str, Any] = {
        "n": int(v[steady.N]),
        "t_last": v[steady.T_LAST],
        "level": v[steady.LEVEL],
        "scale": v[steady.SCALE],
        "shift": v[steady.SHIFT],
        "spread": v[steady.SPREAD],
        "shift_ms": v[steady.SHIFT_MS],
        "spread_mean": v[steady.SPREAD_MEAN],
        "spread_var": v[steady.SPREAD_VAR],
        "band_up": v[steady.BAND_UP],
        "band_down": v[steady.BAND_DOWN],
        "prior_up": v[steady.PRIOR_UP],
        "prior_down": v[steady.PRIOR_DOWN],
        "peak": v[steady.PEAK],
        "open_for": int(v[steady.OPEN_FOR]),
        "rate": v[tails[0] : tails[1]],
        "excess": v[tails[1] : tails[2]],
        "exceeded": v[tails[2] : tails[2] + steady.TAILS],
        "pending": v[tails[2] + steady.TAILS : at],
        "daily": v[at : at + day],
        "weekly": v[at + day : at + day + week],
        "env_up": v[at + day + week : at + day + week + env],
        "env_down": v[at + day + week + env : at + day + week + 2 * env],
    }
    if s.run_side and not v[steady.RUN_SIDE]:
        fields.update(run_ts=[], run_res=[], run_side=0, wild_res=[])
    if history.shape[0]:
        cells = int(v[steady.HISTORY_CELLS])
        fields.update(
            history=bytearray(history[:cells].astype("<f4").tobytes()),
            history_t0=v[steady.HISTORY_T0],
        )
    return msgspec.structs.replace(s, **fields)


_EMPTY_HISTORY = np.zeros(0, dtype=np.float32)


def _as_floats(xs: Sequence[Any]) -> np.ndarray:
    """Values as float64, None as NaN (both give no verdict and change nothing)."""
    try:
        return np.fromiter(xs, dtype=np.float64, count=len(xs))
    except TypeError:
        return np.array([math.nan if x is None else float(x) for x in xs], dtype=np.float64)


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(SeasonalState)


def _deep_copy(state: SeasonalState) -> SeasonalState:
    return _state_decoder.decode(_state_encoder.encode(state))


class _SeasonalBatch(VerdictBatch):
    """Verdicts of a batch, built on demand from the compiled update's rows."""

    __slots__ = ("_made", "_out", "_rows", "_values")

    def __init__(
        self,
        flags: list[int],
        made: dict[int, Verdict | None],
        out: np.ndarray,
        values: np.ndarray,
    ) -> None:
        for j, verdict in made.items():
            flags[j] = 0 if verdict is None else 2 if verdict.anomalous else 1
        self.flags = flags
        self._made, self._out = made, out
        self._values: Any = values
        self._rows: list[list[float]] | None = None

    def get(self, i: int) -> Verdict | None:
        if i in self._made:
            return self._made[i]
        flag = self.flags[i]
        if not flag:
            return None
        if self._rows is None:
            self._rows, self._values = self._out.tolist(), self._values.tolist()
        row = self._rows[i]
        score, expected = row[steady.SCORE], row[steady.EXPECTED]
        lower, upper = expected - row[steady.BELOW], expected + row[steady.ABOVE]
        if flag == VerdictBatch.NORMAL:
            return Verdict(score, False, self._values[i], expected, lower, upper)
        best, raw = int(row[steady.BEST]), row[steady.RAW]
        detail = _detail(row[steady.Z], expected, best, raw, bool(row[steady.SEASONAL]))
        return Verdict(score, True, self._values[i], expected, lower, upper, detail=detail)


def _log10_normal_tail(z: float) -> float:
    """log10 of the two-sided normal tail probability of z, accurate far into the tail."""
    a = abs(z)
    if a < 8.0:
        return math.log10(math.erfc(a / math.sqrt(2.0)))
    return -(a * a / 2.0 + math.log(a * math.sqrt(math.pi / 2.0))) / math.log(10.0)
