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

import math
from typing import Annotated, Any

import msgspec

from lupus_stream.detection.base import Detector, Verdict

MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
# Finite-sample correction of 1.4826 * MAD (Croux & Rousseeuw 1992), which underestimates
# sigma in small samples: b_n for n <= 9, n / (n - 0.8) above.
_SMALL_SAMPLE = {2: 1.196, 3: 1.495, 4: 1.363, 5: 1.206, 6: 1.200, 7: 1.140, 8: 1.129, 9: 1.107}
MEAN_AD_TO_SIGMA = 1.2533  # sqrt(pi/2): same for the mean absolute deviation
REL_FLOOR = 1e-3  # scale never below 0.1 % of |median| ...
ABS_FLOOR = 1e-9  # ... nor below this absolute value (a flat series at 0)
_SQRT2 = math.sqrt(2.0)


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

    def _push(self, value: float) -> None:
        s = self.state
        if len(s.values) < self.params.window:
            s.values.append(value)
            return
        s.values[s.head] = value
        s.head = (s.head + 1) % len(s.values)
