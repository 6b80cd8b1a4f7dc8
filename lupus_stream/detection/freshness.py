"""Freshness of a daily source: a partition must land every day by a local deadline.

Unlike the other detectors this one is driven by two inputs: `update` records a landing
(partition name and row count) at its event time, and `check(now)` asks, at any event
time, whether today's deadline has passed without a landing. Time is always given by the
caller; the detector reads no clock. Days are calendar days in `timezone` (zoneinfo, so
daylight saving time is handled), and `t`/`now` are epoch seconds.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from lupus_stream.detection.base import Detector, ParamError, Verdict

HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"


class FreshnessParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Deadline (HH:MM in `timezone`), smallest acceptable partition, days of grace.

    `grace_days` lets a landing be that many days old: the deadline of day D is met by
    any landing since local midnight of D - grace_days (0: it must land on day D itself).
    """

    expected_by: Annotated[str, msgspec.Meta(pattern=HHMM)] = "06:00"
    timezone: str = "UTC"
    min_rows: Annotated[int, msgspec.Meta(ge=0)] = 1
    grace_days: Annotated[int, msgspec.Meta(ge=0, le=366)] = 0

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ParamError("timezone", f"unknown timezone {self.timezone!r}") from exc


class FreshnessState(msgspec.Struct):
    """The last good landing, the last missed day reported, and the open anomaly."""

    last_landing: float | None = None  # event time of the latest good landing
    last_partition: str | None = None
    reported_day: str | None = None  # ISO date of the last missed day reported
    open_kind: str | None = None  # kind of the anomaly a good landing will close


class FreshnessDetector(Detector[FreshnessParams, FreshnessState]):
    """Raises `stale_source` once per missed day and `empty_partition` on a small landing.

    `update(t, (partition, row_count))`:
    - `row_count < min_rows`: anomalous `empty_partition` (score 1.0). Such a landing
      does not count as fresh data.
    - a good landing after an anomaly (missed deadline or empty partition): a quiet
      verdict of that kind (score 0) so the caller sees the source recovered;
    - otherwise `None`.

    `check(now)`: with `day` the calendar day of `now` in `timezone`, if `now` is past
    `expected_by` on `day` and no good landing happened since local midnight of
    `day - grace_days`, an anomalous `stale_source` verdict (score 1.0, value = hours
    since the last landing), once per missed day; `None` otherwise. Before the first
    landing ever seen `check` never fires: until then we do not know that the source
    exists (a newly declared source would otherwise alert before its first run).

    >>> d = FreshnessDetector(FreshnessParams(expected_by="06:00"))
    >>> day = 1714694400.0  # 2024-05-03 00:00 UTC
    >>> d.update(day - 86400 + 5 * 3600, ("2024-05-01", 1200)) is None
    True
    >>> d.check(day + 5 * 3600) is None  # before the deadline
    True
    >>> v = d.check(day + 7 * 3600)
    >>> v.kind, v.anomalous, v.value
    ('stale_source', True, 26.0)
    >>> d.check(day + 8 * 3600) is None  # reported once
    True
    >>> d.update(day + 9 * 3600, ("2024-05-02", 1100)).anomalous
    False
    """

    kind = "freshness"
    version = 1
    Params = FreshnessParams
    State = FreshnessState

    def __init__(
        self, params: FreshnessParams | None = None, state: FreshnessState | None = None
    ) -> None:
        super().__init__(params, state)
        self._tz = ZoneInfo(self.params.timezone)
        hours, minutes = self.params.expected_by.split(":")
        self._deadline = time(int(hours), int(minutes))

    def update(self, t: float, x: Any) -> Verdict | None:
        partition, row_count = x
        partition, rows = str(partition), int(row_count)
        p, s = self.params, self.state
        if rows < p.min_rows:
            s.open_kind = "empty_partition"
            return Verdict(
                1.0,
                True,
                float(rows),
                lower=float(p.min_rows),
                kind="empty_partition",
                detail=f"partition {partition} landed with {rows} rows "
                f"(at least {p.min_rows} expected)",
            )
        previous = s.last_landing
        if previous is None or t >= previous:
            s.last_landing, s.last_partition = t, partition
        if s.open_kind is None:
            return None
        kind, s.open_kind = s.open_kind, None
        return Verdict(
            0.0,
            False,
            None if previous is None else (t - previous) / 3600.0,
            kind=kind,
            detail=f"partition {partition} landed at {self._format(t)} with {rows} rows",
        )

    def check(self, now: float) -> Verdict | None:
        """The `stale_source` verdict for the day of `now`, if its deadline was missed."""
        s = self.state
        if s.last_landing is None:
            return None
        day = datetime.fromtimestamp(now, self._tz).date()
        if now <= self._at(day, self._deadline):
            return None
        if s.last_landing >= self._at(day - timedelta(days=self.params.grace_days), time(0)):
            return None
        if s.reported_day == day.isoformat():
            return None
        s.reported_day = day.isoformat()
        s.open_kind = "stale_source"
        p = self.params
        grace = f" (nor in the {p.grace_days} days before)" if p.grace_days else ""
        return Verdict(
            1.0,
            True,
            (now - s.last_landing) / 3600.0,
            kind="stale_source",
            detail=f"no partition landed by {p.expected_by} {p.timezone} on {day}{grace}; "
            f"last landing {self._format(s.last_landing)} (partition {s.last_partition})",
        )

    def _at(self, day: date, at: time) -> float:
        return datetime.combine(day, at, tzinfo=self._tz).timestamp()

    def _format(self, t: float) -> str:
        return datetime.fromtimestamp(t, self._tz).isoformat()
