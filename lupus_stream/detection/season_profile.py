"""How a season is estimated from a sampled history: the phase grid of a period, the
per-phase medians and the decomposition the seasonal detector decides and installs its
periods with (never called per point)."""

from __future__ import annotations

import numpy as np


def cycle_bins(period: float, interval: float) -> int:
    return max(2, round(period / interval))


def phase_of(t: float, period: float, bins: int) -> int:
    return int((t % period) / period * bins) % bins


def median(x: np.ndarray) -> float:
    """`float(np.median(x))` of a float array, by one sort: numpy's median costs tens of
    microseconds in Python on the short arrays of the interval and period decisions. A
    NaN, or a zero (whose sign could differ between the two ways), takes `np.median`."""
    ordered = np.sort(x)
    n = len(ordered)
    if not n or ordered[-1] != ordered[-1]:
        return float(np.median(x))
    half = n // 2
    middle = (
        float(ordered[half]) if n % 2 else (float(ordered[half - 1]) + float(ordered[half])) / 2.0
    )
    return middle if middle != 0.0 else float(np.median(x))


def phase_medians(values: np.ndarray, ph: np.ndarray, bins: int) -> np.ndarray:
    """Per phase, `np.median` of the values of that phase (0 where a phase has none).

    One sort for all phases: a median is its group's middle order statistic (or the mean
    of the two middle ones), the same floats whichever way they are found. Only a -0.0
    (which sorts equal to 0.0 but encodes differently) or a non-finite value could tell
    the ways apart; those take the per-phase `np.median` loop.
    """
    profile = np.zeros(bins)
    zeros = values == 0.0
    if not np.isfinite(values).all() or (zeros.any() and np.signbit(values[zeros]).any()):
        order = np.argsort(ph, kind="stable")
        sorted_ph = ph[order]
        sorted_values = values[order]
        bounds = np.searchsorted(sorted_ph, np.arange(bins + 1))
        for b in range(bins):
            lo, hi = bounds[b], bounds[b + 1]
            if hi > lo:
                profile[b] = float(np.median(sorted_values[lo:hi]))
        return profile
    order = np.lexsort((values, ph))  # by phase, then by value
    sorted_values = values[order]
    bounds = np.searchsorted(ph[order], np.arange(bins + 1))
    lo, hi = bounds[:-1], bounds[1:]
    count = hi - lo
    present = count > 0
    mid = (lo + count // 2)[present]
    odd = (count % 2 == 1)[present]
    upper = sorted_values[mid]
    lower = sorted_values[np.where(odd, mid, mid - 1)]
    profile[present] = np.where(odd, upper, (lower + upper) / 2.0)
    return profile


def decompose(
    values: np.ndarray, bins: int, phases: np.ndarray
) -> tuple[np.ndarray, float, np.ndarray]:
    """Per-phase median season of `values` around a centred moving-average trend.

    Returns the season profile (length `bins`, centred on 0), the seasonal strength and
    the remainder (values minus trend minus season, on the inner part of the history).
    """
    kernel = np.ones(bins) / bins
    trend = np.convolve(values, kernel, mode="same")
    half = bins // 2
    inner = slice(half, len(values) - half)
    detrended = values[inner] - trend[inner]
    ph = phases[inner]
    profile = phase_medians(detrended, ph, bins)
    profile -= median(profile)
    season = profile[ph]
    remainder = detrended - season
    total = float(np.var(detrended))
    if total <= 0.0:
        return profile, 0.0, remainder
    # a profile fitted to k cycles explains about 1/k of the variance of pure noise
    k = max(len(detrended) / bins, 1.0)
    raw = 1.0 - float(np.var(remainder)) / total
    strength = (raw - 1.0 / k) / (1.0 - 1.0 / k) if k > 1.0 else 0.0
    return profile, max(0.0, strength), remainder
