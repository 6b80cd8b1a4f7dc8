"""Concept drift seen as accuracy decay: each window of outcomes against a reference.

Labels arrive late and are joined to predictions upstream; this detector only sees
whether each prediction was right (1.0), wrong (0.0), or partly right (a value between).
The first `reference_windows` tumbling windows set the reference accuracy; every later
window is tested for being worse by a one-sided two-proportion z-test. A window is
anomalous only when the drop is both large enough to matter (`min_drop`) and unlikely to
be noise (`confidence`), so a big window can not alert on a trivial drop and a small one
can not alert on a noisy one.

The reference is fixed once set: a model that stays worse keeps alerting until the
detector is reset (a new detector state) after retraining.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec

from lupus_stream.detection.base import Detector, Verdict

_SQRT2 = math.sqrt(2.0)


def normal_cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / _SQRT2)


def outcome_value(correct: Any) -> float | None:
    """`correct` as a float in [0, 1]; `None` for a missing outcome (None or NaN)."""
    if correct is None:
        return None
    value = float(correct)
    if math.isnan(value):
        return None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"an outcome must lie in [0, 1], got {value!r}")
    return value


class AccuracyParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Window size (outcomes), reference length (windows), drop that matters, confidence."""

    window: Annotated[int, msgspec.Meta(ge=10)] = 500
    reference_windows: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 2
    min_drop: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.05
    confidence: Annotated[float, msgspec.Meta(ge=0.5, lt=1)] = 0.999


class AccuracyState(msgspec.Struct):
    """Reference totals and the open window's totals."""

    ref_windows: int = 0  # reference windows closed so far
    ref_n: int = 0
    ref_sum: float = 0.0
    win_n: int = 0
    win_sum: float = 0.0


class AccuracyDetector(Detector[AccuracyParams, AccuracyState]):
    """One verdict per closed window of `window` outcomes.

    During the reference the verdicts are quiet (score 0) and carry the window accuracy.
    After it, `z = (ref - acc) / sqrt(p (1 - p) (1/n_ref + 1/n_win))` with the pooled
    accuracy `p`, `score = Phi(z)`, and the window is anomalous iff
    `ref - acc >= min_drop` and `score >= confidence`. Missing outcomes (None, NaN) are
    skipped; values outside [0, 1] raise `ValueError`.

    >>> d = AccuracyDetector(AccuracyParams(window=100, reference_windows=1))
    >>> _ = d.update_many(range(100), [1.0] * 90 + [0.0] * 10)  # reference: 90 %
    >>> v = d.update_many(range(100, 200), [1.0] * 60 + [0.0] * 40)[-1]
    >>> v.anomalous, v.value, v.expected
    (True, 0.6, 0.9)
    """

    kind = "accuracy"
    version = 1
    Params = AccuracyParams
    State = AccuracyState

    def update(self, t: float, x: Any) -> Verdict | None:
        value = outcome_value(x)
        if value is None:
            return None
        p, s = self.params, self.state
        s.win_n += 1
        s.win_sum += value
        if s.win_n < p.window:
            return None
        n, total = s.win_n, s.win_sum
        s.win_n, s.win_sum = 0, 0.0
        acc = total / n
        if s.ref_windows < p.reference_windows:
            s.ref_windows += 1
            s.ref_n += n
            s.ref_sum += total
            return Verdict(
                0.0,
                False,
                acc,
                kind="accuracy_decay",
                detail=f"reference window {s.ref_windows}/{p.reference_windows}: "
                f"accuracy {acc:.1%} over {n} outcomes",
            )
        ref = s.ref_sum / s.ref_n
        pooled = (s.ref_sum + total) / (s.ref_n + n)
        se = math.sqrt(max(pooled * (1.0 - pooled), 0.0) * (1.0 / s.ref_n + 1.0 / n))
        drop = ref - acc
        # se == 0: every outcome identical on both sides, so no evidence of a drop
        z = drop / se if se > 0 else 0.0
        score = normal_cdf(z) if se > 0 else 0.0
        anomalous = drop >= p.min_drop and score >= p.confidence
        return Verdict(
            score,
            anomalous,
            acc,
            ref,
            lower=ref - p.min_drop,
            kind="accuracy_decay",
            detail=f"accuracy {acc:.1%} over {n} outcomes vs reference {ref:.1%} "
            f"over {s.ref_n} (drop {drop * 100:.1f} points, z {z:.1f})",
        )
