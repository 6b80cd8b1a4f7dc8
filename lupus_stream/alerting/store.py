"""Where alert states live between anomalies; each runtime brings its own backend."""

from __future__ import annotations

from typing import Protocol

from lupus_stream.alerting.lifecycle import AlertState
from lupus_stream.alerting.silences import Silence


class AlertStore(Protocol):
    """Alert states keyed by fingerprint; `active()` is what ticks must look at."""

    def get(self, fp: str) -> AlertState | None:
        """The state of one alert, or None if it was never seen."""
        ...

    def put(self, state: AlertState) -> None:
        """Insert or replace the state of `state.fingerprint`."""
        ...

    def active(self) -> list[AlertState]:
        """All pending or firing alerts."""
        ...

    def silences(self) -> list[Silence]:
        """Every silence, expired ones too, by start time."""
        ...

    def close(self) -> None:
        """Release the backend."""
        ...
