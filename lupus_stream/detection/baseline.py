"""Seasonal baseline: compare a point with the same time in the last few seasons.

The rule people first ask for ("CTR is far below the same weekday of the last four
weeks"), made robust: the expected value is the median of the points found one, two,
... `seasons` periods earlier, and the deviation is measured in units of a robust scale
(MAD) of the recent residuals, so weekends and night hours are not anomalies.

Cold start: until `min_seasons` earlier points exist for a point, there is no seasonal
expectation and the verdict is quiet (score 0); the same holds until `min_residuals`
residuals give a scale. A run of `shift_after` same-side anomalies is a level shift: the
detector reports it once (`changepoint_at` = the run's first point) and adds the run's
median residual to a level offset, so it follows the new level instead of paging for a
whole season.
"""

from __future__ import annotations

import bisect
import math
from typing import Annotated, Any

import msgspec

from lupus_stream.detection.base import Detector, ParamError, Verdict
from lupus_stream.durations import parse_duration

MAD_TO_SIGMA = 1.4826
_SQRT2 = math.sqrt(2.0)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    mid = n // 2
    return ordered[mid] if n % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


class BaselineParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Season length (a duration such as `1d` or `1w`), how many seasons back, thresholds."""

    season: str = "1w"
    seasons: Annotated[int, msgspec.Meta(ge=1, le=12)] = 4
    min_seasons: Annotated[int, msgspec.Meta(ge=1, le=12)] = 2
    tolerance: Annotated[float, msgspec.Meta(gt=0, le=0.5)] = 0.02
    threshold: Annotated[float, msgspec.Meta(gt=0)] = 4.5
    residual_window: Annotated[int, msgspec.Meta(ge=5, le=10_000)] = 28
    min_residuals: Annotated[int, msgspec.Meta(ge=3)] = 5
    shift_after: Annotated[int, msgspec.Meta(ge=1)] = 3

    def __post_init__(self) -> None:
        try:
            season = parse_duration(self.season)
        except ValueError as exc:
            raise ParamError("season", str(exc)) from None
        if season <= 0:
            raise ParamError("season", "season must be a positive duration")
        if self.min_seasons > self.seasons:
            raise ParamError("min_seasons", "min_seasons must not exceed seasons")


class BaselineState(msgspec.Struct):
    """Level-adjusted history, recent residuals, the level offset and the current run."""

    ts: list[float] = []
    xs: list[float] = []
    residuals: list[float] = []
    level: float = 0.0
    run_ts: list[float] = []
    run_res: list[float] = []
    run_side: int = 0


class SeasonalBaselineDetector(Detector[BaselineParams, BaselineState]):
    """Robust deviation from the same phase of earlier seasons.

    >>> d = SeasonalBaselineDetector(BaselineParams(season="1d"))
    >>> day = 86400.0
    >>> _ = [d.update(i * 3600.0, 100.0 + (50.0 if i % 24 == 12 else 0) + (i % 3))
    ...      for i in range(24 * 5)]
    >>> d.update(24 * 5 * 3600.0 + 12 * 3600.0, 150.0).anomalous  # a normal noon peak
    False
    """

    kind = "baseline"
    version = 1
    Params = BaselineParams
    State = BaselineState

    def __init__(self, params: BaselineParams | None = None, state: BaselineState | None = None):
        super().__init__(params, state)
        self._period = parse_duration(self.params.season)
        self._tol = self.params.tolerance * self._period

    def _expected(self, t: float) -> list[float]:
        s, found = self.state, []
        for k in range(1, self.params.seasons + 1):
            target = t - k * self._period
            i = bisect.bisect_left(s.ts, target - self._tol)
            best, best_gap = None, self._tol
            while i < len(s.ts) and s.ts[i] <= target + self._tol:
                gap = abs(s.ts[i] - target)
                if gap <= best_gap:
                    best, best_gap = s.xs[i], gap
                i += 1
            if best is not None:
                found.append(best)
        return found

    def update(self, t: float, x: Any) -> Verdict | None:
        if x is None or (value := float(x)) != value:
            return None
        p, s = self.params, self.state
        matches = self._expected(t)
        self._remember(t, value - s.level)
        if len(matches) < p.min_seasons:
            return Verdict(0.0, False, value, detail=f"cold start ({len(matches)} seasons)")
        expected = _median(matches) + s.level
        residual = value - expected
        if len(s.residuals) < p.min_residuals:
            s.residuals.append(residual)
            return Verdict(0.0, False, value, expected, detail="cold start (residual scale)")
        center = _median(s.residuals)
        scale = MAD_TO_SIGMA * _median([abs(r - center) for r in s.residuals])
        scale = max(scale, 1e-9, 1e-3 * abs(expected))
        z = (residual - center) / scale
        score = math.erf(abs(z) / _SQRT2)
        band = p.threshold * scale
        lower, upper = expected + center - band, expected + center + band
        if abs(z) <= p.threshold:
            s.residuals.append(residual)
            del s.residuals[: -p.residual_window]
            s.run_ts, s.run_res, s.run_side = [], [], 0
            return Verdict(score, False, value, expected, lower, upper, kind="outlier")
        side = 1 if z > 0 else -1
        if side != s.run_side:
            s.run_ts, s.run_res, s.run_side = [], [], side
        s.run_ts.append(t)
        s.run_res.append(residual)
        change = f"{residual / expected:+.1%}" if expected else f"{residual:+.4g}"
        detail = f"{change} vs the same time in {len(matches)} earlier seasons"
        if len(s.run_res) < p.shift_after:
            return Verdict(
                score, True, value, expected, lower, upper, kind="outlier", detail=detail
            )
        shift = _median(s.run_res)
        start = s.run_ts[0]
        self._relevel(shift, s.run_ts)
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
            detail=f"level shift of {shift:+.4g} since the run began; " + detail,
        )

    def _relevel(self, shift: float, run: list[float]) -> None:
        """Move the level by `shift`; the run's own points now sit at the new level."""
        s = self.state
        s.level += shift
        for i in range(len(s.ts) - 1, -1, -1):
            if s.ts[i] < run[0]:
                break
            if s.ts[i] in run:
                s.xs[i] -= shift

    def _remember(self, t: float, adjusted: float) -> None:
        s = self.state
        if s.ts and t < s.ts[-1]:
            i = bisect.bisect_right(s.ts, t)
            s.ts.insert(i, t)
            s.xs.insert(i, adjusted)
        else:
            s.ts.append(t)
            s.xs.append(adjusted)
        horizon = s.ts[-1] - self.params.seasons * self._period - self._tol
        if s.ts[0] < horizon:
            cut = bisect.bisect_left(s.ts, horizon)
            del s.ts[:cut]
            del s.xs[:cut]
