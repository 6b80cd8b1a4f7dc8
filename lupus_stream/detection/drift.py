"""Data drift of one feature or prediction stream: PSI of each window against a reference.

The first `reference_size` observations are the reference. Numeric values are binned by
the reference quantiles (so every reference bin holds about the same share), categorical
values (strings, booleans) are counted per category. After the reference, every
`window` observations are compared with it by the population stability index

    PSI = sum_i (w_i - r_i) * ln(w_i / r_i)

(the symmetric Kullback-Leibler divergence of the two histograms; a bin empty on one side
counts as half an observation there, an epsilon of 0.5/n that keeps the PSI of small
windows finite and near its chi-square approximation). Missing values do not
enter the histograms; they are watched through the missing-value rate. A window whose
values mostly have the other type than the reference (strings where numbers were, or the
reverse) is a schema change rather than drift.

Only bin edges and counts are kept once the reference is complete, so the state is small.
"""

from __future__ import annotations

import math
import numbers
from bisect import bisect_right
from typing import Annotated, Any

import msgspec
import numpy as np
from scipy.special import gammainc

from lupus_stream.detection.base import Detector, Verdict

MAX_CATEGORIES = 100
OTHER = "__other__"
EMPTY_BIN = 0.5  # an empty bin counts as half an observation (the epsilon of the PSI)
SIGNIFICANCE = 0.99  # score needed, besides the PSI threshold, to call drift
SCHEMA_SHARE = 0.5  # share of wrong-typed values in a window that is a schema change


class DriftParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Reference and window sizes (in observations), bins and the two thresholds."""

    reference_size: Annotated[int, msgspec.Meta(ge=10, le=1_000_000)] = 1000
    window: Annotated[int, msgspec.Meta(ge=10, le=10_000_000)] = 1000
    bins: Annotated[int, msgspec.Meta(ge=2, le=100)] = 10
    psi_threshold: Annotated[float, msgspec.Meta(gt=0)] = 0.2
    missing_threshold: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.1


class DriftState(msgspec.Struct):
    """Reference fill, then reference histogram, plus the open window's histogram."""

    # reference
    ref_n: int = 0  # observations seen for the reference, missing included
    ref_missing: int = 0
    ref_values: list[float] = []  # numeric reference values, only while filling
    ref_cats: dict[str, int] = {}  # categorical reference counts
    ref_type: str = ""  # "", "numeric", "categorical", or "none" (all missing)
    ref_mismatch: int = 0  # reference values of the other type
    edges: list[float] = []  # numeric bin edges (bins are [e_i, e_i+1))
    ref_counts: list[int] = []  # numeric reference counts per bin
    # open window
    win_n: int = 0
    win_missing: int = 0
    win_mismatch: int = 0
    win_counts: list[int] = []
    win_cats: dict[str, int] = {}


def _classify(x: Any) -> float | str | None:
    """A number (float), a category (str), or missing (`None`, also NaN)."""
    if x is None or isinstance(x, str):
        return x
    if isinstance(x, bool | np.bool_):
        return "true" if x else "false"
    if isinstance(x, numbers.Real):
        value = float(x)
        return None if math.isnan(value) else value
    return f"<{type(x).__name__}>"


def _chi2_cdf(x: float, df: int) -> float:
    return float(gammainc(df / 2.0, x / 2.0)) if x > 0 else 0.0


def psi(ref: list[int], win: list[int]) -> tuple[float, int]:
    """PSI of two histograms over the same bins, and the number of bins used by either."""
    n_ref, n_win = sum(ref), sum(win)
    total, used = 0.0, 0
    for r, w in zip(ref, win, strict=True):
        if r == 0 and w == 0:
            continue
        used += 1
        pr = max(r, EMPTY_BIN) / n_ref
        pw = max(w, EMPTY_BIN) / n_win
        total += (pw - pr) * math.log(pw / pr)
    return total, used


class DriftDetector(Detector[DriftParams, DriftState]):
    """One verdict per closed window: data drift (PSI), missing values, or schema change.

    Calibration: with no drift, `PSI * n_eff` (`n_eff = n_ref * n_win / (n_ref + n_win)`,
    counting non-missing values) is approximately chi-square with `bins - 1` degrees of
    freedom, so `score = chi2.cdf(PSI * n_eff, bins - 1)`, where `bins` counts the bins
    holding values on either side (quantile edges of tied values merge bins; categories
    vary). Null scores are close to uniform. Drift is anomalous only when it
    is both large (`PSI >= psi_threshold`) and significant (`score >= 0.99`). The missing
    rate is anomalous when it rose by at least `missing_threshold` and a one-sided
    two-proportion z-test gives `score >= 0.99`. The verdict reports data drift unless
    only the missing rate is anomalous or both are and the missing rate scores higher;
    when both are anomalous `detail` names the other one too. A window with no values at
    all (everything missing) reports the missing rate.

    Categories: the first 100 distinct reference categories are kept, later ones count as
    `__other__`; in a window, categories unknown to the reference keep their own bin (a
    new category is drift) unless the reference overflowed, then they go to `__other__`.

    >>> import random
    >>> rng = random.Random(1)
    >>> d = DriftDetector(DriftParams(reference_size=500, window=500))
    >>> ref = [rng.gauss(0, 1) for _ in range(500)]
    >>> shifted = [rng.gauss(1, 1) for _ in range(500)]
    >>> verdicts = d.update_many(range(1000), ref + shifted)
    >>> v = verdicts[-1]
    >>> v.kind, v.anomalous, v.value > 0.2
    ('data_drift', True, True)
    """

    kind = "drift"
    version = 1
    Params = DriftParams
    State = DriftState

    def update(self, t: float, x: Any) -> Verdict | None:
        p, s = self.params, self.state
        value = _classify(x)
        if s.ref_type == "":
            s.ref_n += 1
            if value is None:
                s.ref_missing += 1
            elif isinstance(value, float):
                s.ref_values.append(value)
            else:
                self._count(s.ref_cats, value, capped=False)
            if s.ref_n >= p.reference_size:
                self._close_reference()
            return None

        s.win_n += 1
        if value is None:
            s.win_missing += 1
        elif isinstance(value, float):
            if s.ref_type == "numeric":
                s.win_counts[bisect_right(s.edges, value)] += 1
            else:
                s.win_mismatch += 1
        elif s.ref_type == "categorical":
            self._count(s.win_cats, value, capped=True)
        else:
            s.win_mismatch += 1
        if s.win_n < p.window:
            return None
        verdict = self._judge()
        s.win_n = s.win_missing = s.win_mismatch = 0
        s.win_counts = [0] * len(s.ref_counts)
        s.win_cats = {}
        return verdict

    # -- reference -----------------------------------------------------------------

    def _count(self, counts: dict[str, int], key: str, *, capped: bool) -> None:
        if key in counts:
            counts[key] += 1
            return
        s = self.state
        if capped and key not in s.ref_cats and OTHER in s.ref_cats:
            key = OTHER  # the reference overflowed: unknown categories may hide in OTHER
        elif len(counts) >= MAX_CATEGORIES:
            key = OTHER
        counts[key] = counts.get(key, 0) + 1

    def _close_reference(self) -> None:
        s, bins = self.state, self.params.bins
        n_num, n_cat = len(s.ref_values), sum(s.ref_cats.values())
        if n_num == 0 and n_cat == 0:
            s.ref_type = "none"
        elif n_num >= n_cat:
            s.ref_type = "numeric"
            ordered = np.sort(np.asarray(s.ref_values, dtype=float))
            quantiles = np.quantile(ordered, np.arange(1, bins) / bins, method="inverted_cdf")
            s.edges = [float(e) for e in np.unique(quantiles)]
            counts = np.bincount(
                np.searchsorted(np.asarray(s.edges), ordered, side="right"),
                minlength=len(s.edges) + 1,
            )
            s.ref_counts = [int(c) for c in counts]
            s.ref_mismatch = n_cat
        else:
            s.ref_type = "categorical"
            s.ref_mismatch = n_num
        if s.ref_type != "categorical":
            s.ref_cats = {}
        s.ref_values = []
        s.win_counts = [0] * len(s.ref_counts)

    # -- window --------------------------------------------------------------------

    def _judge(self) -> Verdict:
        s = self.state
        n_values = s.win_n - s.win_missing
        if s.ref_type in ("numeric", "categorical") and n_values > 0:
            share = s.win_mismatch / n_values
            if share > SCHEMA_SHARE:
                wrong = "strings" if s.ref_type == "numeric" else "numbers"
                ref_values = s.ref_n - s.ref_missing
                return Verdict(
                    1.0,
                    True,
                    share,
                    s.ref_mismatch / ref_values if ref_values else 0.0,
                    upper=SCHEMA_SHARE,
                    kind="schema_change",
                    detail=f"{share:.0%} of {n_values} values are {wrong}; "
                    f"the reference was {s.ref_type}",
                )
        missing = self._missing_verdict()
        drift = self._drift_verdict()
        if drift is None:
            return missing
        # the anomalous finding with the higher score; data drift when neither is anomalous
        if missing.anomalous and (not drift.anomalous or missing.score > drift.score):
            worst, second = missing, drift
        else:
            worst, second = drift, missing
        if second.anomalous:
            worst = Verdict(
                worst.score,
                worst.anomalous,
                worst.value,
                worst.expected,
                worst.lower,
                worst.upper,
                worst.changepoint_at,
                worst.kind,
                f"{worst.detail}; also {second.detail}",
            )
        return worst

    def _drift_verdict(self) -> Verdict | None:
        p, s = self.params, self.state
        if s.ref_type == "numeric":
            ref, win = s.ref_counts, s.win_counts
        elif s.ref_type == "categorical":
            keys = sorted(s.ref_cats.keys() | s.win_cats.keys())
            ref = [s.ref_cats.get(k, 0) for k in keys]
            win = [s.win_cats.get(k, 0) for k in keys]
        else:
            return None
        n_ref, n_win = sum(ref), sum(win)
        if n_ref == 0 or n_win == 0:
            return None
        value, used = psi(ref, win)
        n_eff = n_ref * n_win / (n_ref + n_win)
        score = _chi2_cdf(value * n_eff, max(used - 1, 1))
        anomalous = value >= p.psi_threshold and score >= SIGNIFICANCE
        return Verdict(
            score,
            anomalous,
            value,
            0.0,
            upper=p.psi_threshold,
            kind="data_drift",
            detail=f"PSI {value:.2f} over {n_win} values vs reference of {n_ref}",
        )

    def _missing_verdict(self) -> Verdict:
        p, s = self.params, self.state
        ref_rate = s.ref_missing / s.ref_n
        rate = s.win_missing / s.win_n
        pooled = (s.ref_missing + s.win_missing) / (s.ref_n + s.win_n)
        se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / s.ref_n + 1.0 / s.win_n))
        # one-sided two-proportion z-test: Phi(z); no variance at all means no evidence
        score = 0.5 * math.erfc(-(rate - ref_rate) / se / math.sqrt(2.0)) if se > 0 else 0.0
        anomalous = rate - ref_rate >= p.missing_threshold and score >= SIGNIFICANCE
        return Verdict(
            score,
            anomalous,
            rate,
            ref_rate,
            upper=ref_rate + p.missing_threshold,
            kind="missing_values",
            detail=f"missing rate {rate:.1%} over {s.win_n} values vs {ref_rate:.1%} "
            f"in the reference",
        )
