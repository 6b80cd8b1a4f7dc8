"""Synthetic series with known cycles, shared by the detector tests."""

from __future__ import annotations

import math

import numpy as np

HOUR, DAY = 3600.0, 86400.0


def daily_with_weekly_cycle(days: int, seed: int) -> tuple[list[float], list[float]]:
    """Daily points, 25 % higher on weekends, 2 % multiplicative noise."""
    rng = np.random.default_rng(seed)
    ts = [d * DAY for d in range(days)]
    xs = [
        100.0 * (1.25 if d % 7 in (5, 6) else 1.0) * (1 + rng.normal(0, 0.02)) for d in range(days)
    ]
    return ts, xs


def hourly_daily_weekly(hours: int, seed: int) -> tuple[list[float], list[float]]:
    """Hourly points: a slow trend, a daily and a weekly cycle, Gaussian noise."""
    rng = np.random.default_rng(seed)
    ts = [h * HOUR for h in range(hours)]
    xs = [
        1000.0
        + 0.05 * h
        + 200.0 * math.sin(2 * math.pi * h / 24)
        + 80.0 * math.sin(2 * math.pi * h / 168)
        + float(rng.normal(0, 20))
        for h in range(hours)
    ]
    return ts, xs
