"""The seasonal detector's steady-state update, compiled, for batches of points.

`SeasonalDetector.update` is the reference: plain Python, one point at a time, every
case (warm-up, period decision, late points, level-shift runs). Once a series is past
all that, a point's update is a few dozen float operations on the level, the profiles,
the envelope and the tails; in Python their cost is the interpreter's, ten times the
arithmetic. `run` does exactly those operations (same order, same IEEE doubles, so the
results are bit for bit those of `update`) over a batch of points of one series, with
numba, and stops where the reference is needed again: a late point, or a point that
joins a level-shift run. Tests feed both paths the same series and compare every
verdict and the final state.

Layouts shared with the caller: a series' state is one float64 vector, its scalars
(indices below), then the tails (rate, excess, exceeded of each tail below), the point
exceedances waiting to teach their size (`DELAY_SLOTS` pairs of tail or -1 and size), the
daily and weekly profiles and the two halves of the daily envelope; `consts` holds the
detector's derived constants and `out` one row per point (columns below).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numba import njit

# scalars
N, T_LAST, LEVEL, SCALE, SHIFT, SPREAD, SHIFT_MS, SPREAD_MEAN, SPREAD_VAR = range(9)
BAND_UP, BAND_DOWN, PEAK, OPEN_FOR, RUN_SIDE = range(9, 14)
# the period decision's history (while undecided): interval, cells, first cell's time,
# and the cell count at which the reference must decide something
INTERVAL, HISTORY_CELLS, HISTORY_T0, CHECK_AT = range(14, 18)
# the prior's share in each point tail's mean excess
PRIOR_UP, PRIOR_DOWN = range(18, 20)
SCALARS = 20
# tails: the point and shift surprises have one per side, the spread one (more variance)
POINT_UP, POINT_DOWN, SHIFT_UP, SHIFT_DOWN, SPREAD_UP = range(5)
TAILS = 5
# a point exceedance's size reaches its tail when the point DELAY_SLOTS after it comes,
# so the points right after an outlier (the rest of an incident) are scored without it
DELAY_SLOTS = 3
# consts
(
    SHIFT_RATE,
    SPREAD_RATE,
    TAIL_RATE,
    TAIL_KEEP,
    ALARM,
    NOTE,
    REFRACTORY,
    CLIP,
    LEVEL_RATE,
    SEASON_STEP,
    SCALE_RATE,
    EXCESS_RATE,
    ENV_REACH,
    ENV_KEEP,
) = range(14)
CONSTS = 14
# out columns (ABOVE, BELOW: how far the expected band reaches on each side)
STATUS, SCORE, EXPECTED, ABOVE, BELOW, Z, RAW, BEST, RESIDUAL, SEASONAL = range(10)
COLUMNS = 10
# out[i, STATUS]: what became of point i
SKIPPED = -1.0  # not processed: the reference must take it
NO_VERDICT, NORMAL, ANOMALOUS = 0.0, 1.0, 2.0  # as in VerdictBatch
IN_RUN = 3.0  # processed up to the level-shift run, which the reference must finish
MAX_HISTORY = 4096
HISTORY_CAPACITY = 2 * MAX_HISTORY + 1  # a full history, a capped gap and one value

DAY = 86400.0
WEEK = 7 * DAY
MEAN_ABS_TO_SIGMA = 1.2533
HALF_SCORE_LOG10_P = 6.0
TAIL_START = 2.0
TAIL_PRIOR_EXCESS = 0.6
TAIL_PRIOR_POINTS = 200.0
TAIL_PRIOR_EXCEEDANCES = 10.0
SURPRISE_CLIP = 6.0
ENVELOPE_MIN = SURPRISE_CLIP
ESCALATION = 1.5
LOG10_COMPONENTS = math.log10(3)
LN10 = math.log(10.0)


@njit(cache=True, nogil=True)
def run(
    ts: Any,
    xs: Any,
    start: int,
    src: Any,
    dst: Any,
    day_bins: int,
    week_bins: int,
    env_bins: int,
    history: Any,
    k: Any,
    out: Any,
) -> int:  # pragma: no cover - compiled; tested against the reference
    """Update the state `src` (left as it is) into `dst` from point `start` on; returns
    the index of the first point not finished (len(ts) when all were).

    `history` (float32, `HISTORY_CAPACITY` cells, changed in place) is the period
    decision's history while the period is undecided, and empty once it is decided.
    """
    dst[:] = src
    rate = dst[SCALARS : SCALARS + TAILS]
    excess = dst[SCALARS + TAILS : SCALARS + 2 * TAILS]
    exceeded = dst[SCALARS + 2 * TAILS : SCALARS + 3 * TAILS]
    at = SCALARS + 3 * TAILS
    pending = dst[at : at + 2 * DELAY_SLOTS]
    at += 2 * DELAY_SLOTS
    daily = dst[at : at + day_bins]
    weekly = dst[at + day_bins : at + day_bins + week_bins]
    at += day_bins + week_bins
    env_up = dst[at : at + env_bins]
    env_down = dst[at + env_bins : at + 2 * env_bins]
    shift_rate = k[SHIFT_RATE]
    spread_rate = k[SPREAD_RATE]
    r = k[TAIL_RATE]
    keep_r = k[TAIL_KEEP]
    alarm_level = k[ALARM]
    note_level = k[NOTE]
    refractory = k[REFRACTORY]
    clip = k[CLIP]
    level_rate = k[LEVEL_RATE]
    season_step = k[SEASON_STEP]
    scale_rate = k[SCALE_RATE]
    excess_rate = k[EXCESS_RATE]
    env_reach = int(k[ENV_REACH])
    env_keep = k[ENV_KEEP]
    n = dst[N]
    t_last = dst[T_LAST]
    level = dst[LEVEL]
    state_scale = dst[SCALE]
    shift = dst[SHIFT]
    spread = dst[SPREAD]
    shift_ms = dst[SHIFT_MS]
    spread_mean = dst[SPREAD_MEAN]
    spread_var = dst[SPREAD_VAR]
    band_up = dst[BAND_UP]
    band_down = dst[BAND_DOWN]
    prior_up = dst[PRIOR_UP]
    prior_down = dst[PRIOR_DOWN]
    peak = dst[PEAK]
    open_for = dst[OPEN_FOR]
    run_side = dst[RUN_SIDE]
    remember = history.shape[0] > 0
    interval = dst[INTERVAL]
    cells = int(dst[HISTORY_CELLS])
    t0 = dst[HISTORY_T0]
    check_at = int(dst[CHECK_AT])
    seasonal = 1.0 if day_bins or week_bins else 0.0
    n_points: int = ts.shape[0]
    stop = n_points
    for i in range(start, n_points):
        value = xs[i]
        t = ts[i]
        if value - value != 0.0:  # NaN (None) or infinite: no verdict, nothing learned
            out[i, STATUS] = NO_VERDICT
            continue
        if not t > t_last:  # late or duplicate
            out[i, STATUS] = SKIPPED
            stop = i
            break
        if remember:  # history on the sampling grid, unless a decision is due
            index = 0 if cells == 0 else _round_half_even((t - t0) / interval)
            # two points in one grid cell: the later one replaces the earlier
            grown = cells if index < cells else cells + min(index - cells, MAX_HISTORY) + 1
            if min(grown, MAX_HISTORY) >= check_at:
                out[i, STATUS] = SKIPPED
                stop = i
                break
            if cells == 0:
                t0 = t
            cell = np.float32(value)
            if math.isinf(cell):  # beyond float32: a gap, as in the reference
                cell = np.float32(math.nan)
            if index < cells:
                history[cells - 1] = cell
            else:
                while cells < grown - 1:
                    history[cells] = np.nan
                    cells += 1
                history[cells] = cell
                cells += 1
            if cells > MAX_HISTORY:
                drop = cells - MAX_HISTORY
                history[:MAX_HISTORY] = history[drop:cells].copy()
                t0 += drop * interval
                cells = MAX_HISTORY
        t_last = t
        n += 1.0
        slot = 2 * (int(n) % DELAY_SLOTS)
        if pending[slot] >= 0.0:  # the point exceedance of DELAY_SLOTS points ago
            c = int(pending[slot])
            exceeded[c] += 1.0
            v = 1.0 / (exceeded[c] + TAIL_PRIOR_EXCEEDANCES)
            if v < excess_rate:
                v = excess_rate
            prior = prior_up if c == POINT_UP else prior_down
            left = (1.0 - v) * prior
            excess[c] = ((1.0 - v) * (1.0 - prior) * excess[c] + v * pending[slot + 1]) / (
                1.0 - left
            )
            need = alarm_level + LOG10_COMPONENTS + math.log10(2.0 * rate[c])
            if c == POINT_UP:
                prior_up = left
                band_up = LN10 * max(need, 0.0)
            else:
                prior_down = left
                band_down = LN10 * max(need, 0.0)
            pending[slot] = -1.0

        # expected value and standardised residual
        dph = -1
        wph = -1
        expected = level
        if day_bins:
            dph = int((t % DAY) / DAY * day_bins) % day_bins
            expected += daily[dph]
        if week_bins:
            wph = int((t % WEEK) / WEEK * week_bins) % week_bins
            expected += weekly[wph]
        residual = value - expected
        scale = state_scale
        floor = 1e-6 * abs(expected)
        if scale < floor:
            scale = floor
        if scale < 1e-9:
            scale = 1e-9
        z = residual / scale
        e_up = prior_up * TAIL_PRIOR_EXCESS * scale + (1.0 - prior_up) * excess[POINT_UP]
        e_down = prior_down * TAIL_PRIOR_EXCESS * scale + (1.0 - prior_down) * excess[POINT_DOWN]
        above = TAIL_START * scale + e_up * band_up
        below = TAIL_START * scale + e_down * band_down

        # the three surprises
        a0 = abs(z)
        if env_bins:
            a = a0
            env = env_up if z > 0.0 else env_down
            ph = int((t % DAY) / DAY * env_bins) % env_bins
            if a > TAIL_START:
                lo = ph - env_reach
                seen = env[lo % env_bins]
                for j in range(lo + 1, ph + env_reach + 1):
                    v = env[j % env_bins]
                    if v > seen:
                        seen = v
                if seen >= ENVELOPE_MIN:
                    discounted = TAIL_START * a / seen
                    if discounted < a0:
                        a0 = discounted
            e = env[ph] * env_keep
            env[ph] = a if a > e else e
        zc = math.copysign(a0 if a0 < SURPRISE_CLIP else SURPRISE_CLIP, z)
        shift = shift + shift_rate * (zc - shift)
        spread = spread + spread_rate * (zc * zc - spread)
        a1 = abs(shift) / math.sqrt(shift_ms)
        a2 = (spread - spread_mean) / math.sqrt(spread_var + 1e-12)
        k0 = POINT_UP if z > 0.0 else POINT_DOWN
        k1 = SHIFT_UP if shift > 0.0 else SHIFT_DOWN
        raw = 0.0
        best = -1
        exceeded_any = a0 > TAIL_START or a1 > TAIL_START or a2 > TAIL_START
        if exceeded_any:
            if a0 > TAIL_START:
                e0 = e_up if k0 == POINT_UP else e_down
                raw = (a0 - TAIL_START) * scale / (e0 * LN10) - math.log10(2.0 * rate[k0])
                best = 0
            if a1 > TAIL_START:
                q = (a1 - TAIL_START) / (excess[k1] * LN10) - math.log10(2.0 * rate[k1])
                if q > raw:
                    raw = q
                    best = 1
            if a2 > TAIL_START:
                q = (a2 - TAIL_START) / (excess[SPREAD_UP] * LN10) - math.log10(rate[SPREAD_UP])
                if q > raw:
                    raw = q
                    best = 2
        raw -= LOG10_COMPONENTS
        if raw < 0.0:
            raw = 0.0
        alarm = raw >= alarm_level

        # one alert per incident
        lp = raw
        if raw >= note_level:
            if open_for > 0.0:
                if raw < ESCALATION * peak:
                    lp = 0.0
                if raw > peak:
                    peak = raw
            else:
                peak = raw
            open_for = refractory
        elif open_for > 0.0:
            open_for -= 1.0
            lp = 0.0
        score = lp / (lp + HALF_SCORE_LOG10_P) if lp < math.inf else 1.0

        # learn
        new_shift_ms = shift_ms + r * (shift * shift - shift_ms)
        delta = spread - spread_mean
        spread_mean = spread_mean + r * delta
        spread_var = keep_r * (spread_var + r * delta * delta)
        shift_ms = new_shift_ms
        w = 1.0 / (n + TAIL_PRIOR_POINTS)
        if w < r:
            w = r
        if exceeded_any:
            for c in range(TAILS):
                ac = a0 if c == k0 else a1 if c == k1 else a2 if c == SPREAD_UP else 0.0
                if ac > TAIL_START:
                    rate[c] += w * (1.0 - rate[c])
                    if c != k0:
                        exceeded[c] += 1.0
                        v = 1.0 / (exceeded[c] + TAIL_PRIOR_EXCEEDANCES)
                        if v < excess_rate:
                            v = excess_rate
                        excess[c] += v * (ac - TAIL_START - excess[c])
                else:
                    rate[c] -= w * rate[c]
            if a0 > TAIL_START:
                need = alarm_level + LOG10_COMPONENTS + math.log10(2.0 * rate[POINT_UP])
                band_up = LN10 * max(need, 0.0)
                need = alarm_level + LOG10_COMPONENTS + math.log10(2.0 * rate[POINT_DOWN])
                band_down = LN10 * max(need, 0.0)
                pending[slot] = k0
                pending[slot + 1] = (a0 - TAIL_START) * scale
        else:
            keep = 1.0 - w
            for c in range(TAILS):
                rate[c] *= keep
        limit = clip * scale
        step = residual if -limit <= residual <= limit else math.copysign(limit, residual)
        level = level + level_rate * step
        if dph >= 0:
            if wph >= 0:
                seasonal_step = season_step * step
                daily[dph] += 0.5 * seasonal_step
                weekly[wph] += 0.5 * seasonal_step
            else:
                daily[dph] += season_step * step
        elif wph >= 0:
            weekly[wph] += season_step * step

        out[i, SCORE] = score
        out[i, EXPECTED] = expected
        out[i, ABOVE] = above
        out[i, BELOW] = below
        out[i, Z] = z
        out[i, RAW] = raw
        out[i, BEST] = best
        out[i, RESIDUAL] = residual
        out[i, SEASONAL] = seasonal
        if (alarm and best == 0) or a0 > SURPRISE_CLIP:  # joins a level-shift run
            out[i, STATUS] = IN_RUN
            stop = i
            break
        state_scale = state_scale + scale_rate * (MEAN_ABS_TO_SIGMA * abs(step) - state_scale)
        run_side = 0.0
        out[i, STATUS] = ANOMALOUS if alarm else NORMAL
    dst[N] = n
    dst[T_LAST] = t_last
    dst[LEVEL] = level
    dst[SCALE] = state_scale
    dst[SHIFT] = shift
    dst[SPREAD] = spread
    dst[SHIFT_MS] = shift_ms
    dst[SPREAD_MEAN] = spread_mean
    dst[SPREAD_VAR] = spread_var
    dst[BAND_UP] = band_up
    dst[BAND_DOWN] = band_down
    dst[PRIOR_UP] = prior_up
    dst[PRIOR_DOWN] = prior_down
    dst[PEAK] = peak
    dst[OPEN_FOR] = open_for
    dst[RUN_SIDE] = run_side
    dst[HISTORY_CELLS] = cells
    dst[HISTORY_T0] = t0
    return stop


@njit(cache=True, nogil=True)
def run_many(
    ts: Any,
    xs: Any,
    points: Any,
    src: Any,
    dst: Any,
    offsets: Any,
    dims: Any,
    k: Any,
    out: Any,
    stops: Any,
) -> None:  # pragma: no cover - compiled; tested against the reference
    """`run` from the first point of each of several series with decided periods, in one
    call: series `j` has points `points[j, 0]:points[j, 1]` of `ts`, `xs` and `out`,
    state `offsets[j]:offsets[j + 1]` of `src` and `dst`, bins `dims[j]` (day, week,
    envelope) and constants `k[j]`; `stops[j]` is where it stopped, relative to its
    first point."""
    no_history = np.zeros(0, dtype=np.float32)
    for j in range(points.shape[0]):
        b, e = points[j, 0], points[j, 1]
        o, f = offsets[j], offsets[j + 1]
        stops[j] = run(
            ts[b:e],
            xs[b:e],
            0,
            src[o:f],
            dst[o:f],
            dims[j, 0],
            dims[j, 1],
            dims[j, 2],
            no_history,
            k[j],
            out[b:e],
        )


@njit(cache=True, nogil=True)
def _round_half_even(x: float) -> int:  # pragma: no cover - compiled
    """Python's `round(x)` for a finite non-negative float."""
    whole = float(math.floor(x))
    rest = x - whole
    if rest > 0.5 or (rest == 0.5 and whole % 2.0 != 0.0):
        whole += 1.0
    return int(whole)


def warm() -> None:
    """Compile (or load the cached compilation) now rather than on the first batch."""
    state = np.zeros(SCALARS + 9)
    run(
        np.zeros(1),
        np.full(1, math.nan),
        0,
        state,
        np.empty_like(state),
        0,
        0,
        0,
        np.zeros(0, dtype=np.float32),
        np.zeros(CONSTS),
        np.zeros((1, COLUMNS)),
    )
    run_many(
        np.zeros(1),
        np.full(1, math.nan),
        np.array([[0, 1]]),
        state,
        np.empty_like(state),
        np.array([0, len(state)]),
        np.zeros((1, 3), dtype=np.int64),
        np.zeros((1, CONSTS)),
        np.zeros((1, COLUMNS)),
        np.zeros(1, dtype=np.int64),
    )
