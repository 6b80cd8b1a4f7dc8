"""Generate eight weeks of data for the three example products in `detectors/`.

Each product gets its normal behaviour (weekly and daily cycles, noise, delayed labels,
a table landing every morning) and one injected incident. The incidents are returned
with the time window in which an alert is the right answer; everything outside those
windows is a clean period in which no alert should fire.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from lupus_stream.contracts import Label, MetricPoint, PredictionLog, SourceLanded
from lupus_stream.contracts.records import InputRecord

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
DAYS = 56
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

REGIONS = ("north", "south", "east", "west")
AGE_BANDS = ("18-24", "25-34", "35-44", "45+")


@dataclass(frozen=True)
class Incident:
    """An injected fault and the monitor that should catch it."""

    name: str
    monitor: str  # monitor id, product/name
    start: datetime
    end: datetime  # end of the window in which alerts are attributed to this incident
    description: str


@dataclass(frozen=True)
class Scenario:
    records: list[InputRecord]
    incidents: list[Incident]
    start: datetime
    end: datetime


def scenario(seed: int = 7, days: int = DAYS, predictions_per_hour: int = 40) -> Scenario:
    rng = np.random.default_rng(seed)
    end = START + days * DAY
    ctr_drop = START + 40 * DAY
    drift_start = START + 33 * DAY + 9 * HOUR
    missed_day = START + 47 * DAY
    incidents = [
        Incident(
            "ctr-level-drop",
            "sticker-recommender/daily_ctr",
            ctr_drop,
            ctr_drop + 6 * DAY,
            "a ranking bug cuts the sticker panel CTR by 30% for three days, then rollback",
        ),
        Incident(
            "feature-drift",
            "user-attribute-estimator/session_length_drift",
            drift_start,
            drift_start + 3 * DAY,
            "a client release logs session_length in a different unit for two days",
        ),
        Incident(
            "table-not-landed",
            "ad-model/click_log_landed",
            missed_day,
            missed_day + DAY + 12 * HOUR,
            "the ads_click_log partition for the previous day never lands",
        ),
    ]
    records: list[InputRecord] = []
    records.extend(_sticker(rng, days, ctr_drop))
    records.extend(_attributes(rng, days, predictions_per_hour, drift_start, drift_start + 2 * DAY))
    records.extend(_ads(rng, days, missed_day))
    records.sort(key=lambda r: r.event_time)
    return Scenario(records, incidents, START, end)


def _sticker(rng: np.random.Generator, days: int, drop_at: datetime) -> Iterator[InputRecord]:
    """Daily CTR (busier weekends) and catalog coverage, published at 02:00 for the day before."""
    base = 0.042
    for d in range(days):
        day = START + d * DAY
        weekend = day.weekday() >= 5
        ctr = base * (1.10 if weekend else 1.0) * (1 + 0.0005 * d) * (1 + rng.normal(0, 0.015))
        if drop_at <= day < drop_at + 3 * DAY:
            ctr *= 0.70
        published = day + DAY + 2 * HOUR
        yield MetricPoint(
            product="sticker-recommender",
            name="ctr",
            ts=published,
            value=float(ctr),
            labels={"surface": "sticker_panel"},
        )
        coverage = float(np.clip(0.41 + rng.normal(0, 0.015), 0, 1))
        yield MetricPoint(
            product="sticker-recommender", name="catalog_coverage", ts=published, value=coverage
        )


def _attributes(
    rng: np.random.Generator, days: int, per_hour: int, drift_from: datetime, drift_to: datetime
) -> Iterator[InputRecord]:
    """Age-band predictions with two activity features; survey labels arrive 1-4 days later."""
    n = 0
    for h in range(days * 24):
        hour = START + h * HOUR
        drifted = drift_from <= hour < drift_to
        for _ in range(per_hour):
            n += 1
            ts = hour + timedelta(seconds=float(rng.uniform(0, 3600)))
            true_band = int(rng.integers(0, len(AGE_BANDS)))
            session = float(rng.lognormal(3.0 + 0.15 * true_band, 0.5))
            if drifted:
                session *= 2.5  # seconds logged where minutes were expected upstream
            messages = None if rng.random() < 0.02 else float(rng.poisson(20 + 5 * true_band))
            correct = rng.random() < 0.74
            predicted = true_band if correct else int(rng.integers(0, len(AGE_BANDS)))
            request_id = f"req-{n:08d}"
            region = REGIONS[int(rng.integers(0, len(REGIONS)))]
            yield PredictionLog(
                product="user-attribute-estimator",
                model="age_band",
                model_version="2026.01.1",
                request_id=request_id,
                ts=ts,
                features={"session_length": round(session, 3), "messages_per_day": messages},
                prediction=AGE_BANDS[predicted],
                segment={"region": region},
            )
            if rng.random() < 0.5:
                delay = timedelta(hours=float(rng.uniform(24, 96)))
                if ts + delay < START + days * DAY:
                    yield Label(
                        product="user-attribute-estimator",
                        model="age_band",
                        request_id=request_id,
                        ts=ts + delay,
                        label=AGE_BANDS[true_band],
                    )


def _ads(rng: np.random.Generator, days: int, missed_day: datetime) -> Iterator[InputRecord]:
    """Hourly impressions with a daily cycle; the click log lands around 05:00 every day."""
    for h in range(days * 24):
        hour = START + h * HOUR
        daily = 1.0 + 0.45 * math.sin(2 * math.pi * (hour.hour - 9) / 24)
        weekly = 0.92 if hour.weekday() >= 5 else 1.0
        value = 120_000 * daily * weekly * (1 + rng.normal(0, 0.03))
        yield MetricPoint(
            product="ad-model", name="impressions", ts=hour + HOUR, value=float(round(value))
        )
    for d in range(1, days):
        day = START + d * DAY
        if day == missed_day:
            continue
        landed = day + timedelta(hours=float(rng.uniform(4.3, 5.5)))
        yield SourceLanded(
            product="ad-model",
            source="ads_click_log",
            partition=(day - DAY).date().isoformat(),
            row_count=int(rng.normal(4_800_000, 150_000)),
            landed_at=landed,
        )
