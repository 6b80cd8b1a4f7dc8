"""The pure engine: routes records to monitors, owns per-series detectors, emits anomalies."""

from lupus_stream.engine.engine import Engine, Outcome

__all__ = ["Engine", "Outcome"]
