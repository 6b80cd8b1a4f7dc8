"""Event-time join of predictions and their delayed labels by request id.

Either side may arrive first; the unmatched side waits up to `join_within` seconds of
event time (measured against the engine's watermark) and is then forgotten.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import msgspec

Outcome = float


@dataclass(frozen=True, slots=True)
class Joined:
    request_id: str
    t: float
    correct: Outcome
    segment: dict[str, str]


class _Pending(msgspec.Struct, array_like=True):
    t: float
    value: float | str | bool | list[str]
    segment: dict[str, str]


class JoinSnapshot(msgspec.Struct, array_like=True):
    window: float
    predictions: dict[str, _Pending]
    labels: dict[str, _Pending]


def _text(value: float | str | bool) -> str:
    """A label or prediction as a class name: `3.0` (a JSON `3`) is `3`, `True` is `true`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_correct(prediction: float | str | bool | list[str], label: float | str | bool) -> Outcome:
    """1.0 when the prediction matches the label.

    Classes compare by equality (a numeric label `3` matches the class `"3"`, a boolean
    matches `"true"`/`"false"` in any case); a numeric score against a 0/1 or boolean
    label is a binary classifier read at 0.5; a list of items (a ranking) is right when
    it holds the label; other numbers count as right within 10% relative error.
    """
    if isinstance(prediction, list):
        return 1.0 if _text(label) in prediction else 0.0
    if isinstance(prediction, str) or isinstance(label, str):
        p, q = _text(prediction), _text(label)
        if isinstance(prediction, bool) or isinstance(label, bool):
            p, q = p.casefold(), q.casefold()
        return 1.0 if p == q else 0.0
    predicted, actual = float(prediction), float(label)  # booleans are 0 / 1
    if actual in (0.0, 1.0):
        return 1.0 if (predicted >= 0.5) == (actual == 1.0) else 0.0
    return 1.0 if abs(predicted - actual) <= 0.1 * abs(actual) else 0.0


class LabelJoin:
    """Buffers one model's unmatched predictions and labels."""

    def __init__(self, window: float) -> None:
        self.window = window
        self.predictions: OrderedDict[str, _Pending] = OrderedDict()
        self.labels: OrderedDict[str, _Pending] = OrderedDict()

    def add_prediction(
        self,
        request_id: str,
        t: float,
        value: float | str | bool | list[str],
        segment: dict[str, str],
    ) -> Joined | None:
        label = self.labels.pop(request_id, None)
        if label is None:
            self.predictions[request_id] = _Pending(t, value, segment)
            return None
        assert not isinstance(label.value, list)
        return Joined(request_id, label.t, is_correct(value, label.value), segment)

    def add_label(self, request_id: str, t: float, value: float | str | bool) -> Joined | None:
        pred = self.predictions.pop(request_id, None)
        if pred is None:
            self.labels[request_id] = _Pending(t, value, {})
            return None
        return Joined(request_id, t, is_correct(pred.value, value), pred.segment)

    def expire(self, watermark: float) -> int:
        """Forget entries older than the join window; returns how many were dropped."""
        horizon = watermark - self.window
        dropped = 0
        for buffer in (self.predictions, self.labels):
            while buffer:
                first = next(iter(buffer.values()))
                if first.t >= horizon:
                    break
                buffer.popitem(last=False)
                dropped += 1
        return dropped

    def __len__(self) -> int:
        return len(self.predictions) + len(self.labels)

    def snapshot(self) -> JoinSnapshot:
        return JoinSnapshot(self.window, dict(self.predictions), dict(self.labels))

    @classmethod
    def restore(cls, snap: JoinSnapshot) -> LabelJoin:
        join = cls(snap.window)
        join.predictions.update(snap.predictions)
        join.labels.update(snap.labels)
        return join
