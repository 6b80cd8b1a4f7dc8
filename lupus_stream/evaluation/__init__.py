"""Offline evaluation of detectors against labelled benchmarks (pure scoring, no engine)."""
