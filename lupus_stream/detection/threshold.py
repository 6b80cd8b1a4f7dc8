"""Static bounds: a point outside `[lower, upper]` is anomalous.

The simplest detector and the right one when a product owner knows the acceptable range
(a coverage that must stay above 25 %, a latency budget). It learns nothing, so its state
is empty and its verdicts do not depend on history.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from lupus_stream.detection.base import Detector, Verdict


class ThresholdParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`lower` and `upper` are inclusive bounds; leave one out for a one-sided check."""

    lower: float | None = None
    upper: float | None = None

    def __post_init__(self) -> None:
        if self.lower is None and self.upper is None:  # it could never fire
            raise ValueError("a threshold needs lower, upper or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"lower ({self.lower}) must not exceed upper ({self.upper})")


class ThresholdState(msgspec.Struct):
    """Nothing to learn."""


class ThresholdDetector(Detector[ThresholdParams, ThresholdState]):
    """Flags points outside fixed bounds with score 1.0; points inside score 0.0.

    Missing points (`None` or NaN) give no verdict.

    >>> d = ThresholdDetector(ThresholdParams(lower=0.25))
    >>> d.update(0.0, 0.4).anomalous, d.update(60.0, 0.1).anomalous
    (False, True)
    >>> d.update(120.0, None) is None
    True
    """

    kind = "threshold"
    version = 1
    Params = ThresholdParams
    State = ThresholdState

    def update(self, t: float, x: Any) -> Verdict | None:
        if x is None:
            return None
        value = float(x)
        if math.isnan(value):
            return None
        lower, upper = self.params.lower, self.params.upper
        if lower is not None and value < lower:
            detail = f"{value:g} is below the lower bound {lower:g}"
        elif upper is not None and value > upper:
            detail = f"{value:g} is above the upper bound {upper:g}"
        else:
            return Verdict(0.0, False, value, None, lower, upper, kind="threshold")
        return Verdict(1.0, True, value, None, lower, upper, kind="threshold", detail=detail)
