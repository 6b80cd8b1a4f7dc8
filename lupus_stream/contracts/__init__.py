"""Record types exchanged on the topics, and their decoding with precise errors."""

from lupus_stream.contracts.decode import Decoded, RecordError, decode_message, encode_records
from lupus_stream.contracts.records import (
    INPUT_TYPES,
    AlertEvent,
    Anomaly,
    DeadLetter,
    InputRecord,
    Label,
    MetricPoint,
    PredictionLog,
    SourceLanded,
)

__all__ = [
    "INPUT_TYPES",
    "AlertEvent",
    "Anomaly",
    "DeadLetter",
    "Decoded",
    "InputRecord",
    "Label",
    "MetricPoint",
    "PredictionLog",
    "RecordError",
    "SourceLanded",
    "decode_message",
    "encode_records",
]
