"""Declarative monitor definitions, loaded from `detectors/*.yaml`."""

from lupus_stream.monitors.loader import MonitorError, load_catalog, load_product
from lupus_stream.monitors.spec import (
    AccuracySignal,
    AlertPolicy,
    Catalog,
    FairnessSignal,
    FeatureSignal,
    MetricSignal,
    Monitor,
    PredictionSignal,
    ProductSpec,
    Signal,
    SourceSignal,
)

__all__ = [
    "AccuracySignal",
    "AlertPolicy",
    "Catalog",
    "FairnessSignal",
    "FeatureSignal",
    "MetricSignal",
    "Monitor",
    "MonitorError",
    "PredictionSignal",
    "ProductSpec",
    "Signal",
    "SourceSignal",
    "load_catalog",
    "load_product",
]
