"""The detector interface shared by every algorithm.

A detector holds two msgspec structs: `params` (validated configuration, all fields with
defaults) and `state` (everything it learned). Serialising a detector is encoding both
with MessagePack inside a versioned envelope, so state never needs pickle and a
snapshot from the wire can only ever become plain data.

Time is passed in as event time in epoch seconds (`t`); detectors never read a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Generic, Self, TypeVar

import msgspec

FORMAT_VERSION = 1


class Verdict(msgspec.Struct, frozen=True):
    """What a detector concluded about one observation or one closed window.

    `score` is calibrated to [0, 1] (a tail probability where the detector has a model);
    `value` is the observed quantity the verdict is about (the point, or a window
    statistic such as PSI or accuracy); `changepoint_at` is the event time at which a
    new regime started, when the detector has just placed one. A msgspec struct: a
    series detector builds one per point, and a frozen dataclass costs ~15 times more.
    """

    score: float
    anomalous: bool
    value: float | None = None
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    changepoint_at: float | None = None
    kind: str = "outlier"
    detail: str = ""


QUIET = Verdict(score=0.0, anomalous=False)


class VerdictBatch:
    """The verdicts of `Detector.update_batch`, one per observation, built on demand.

    `flags[i]` says what `update` returned for observation `i` without building it:
    `NO_VERDICT` (None), `NORMAL` (a verdict that is not anomalous) or `ANOMALOUS`;
    `get(i)` returns that verdict itself. A detector's batch path can thus skip building
    the many verdicts nobody reads (a quiet point of a quiet series).
    """

    NO_VERDICT: ClassVar[int] = 0
    NORMAL: ClassVar[int] = 1
    ANOMALOUS: ClassVar[int] = 2

    __slots__ = ("_verdicts", "flags")

    def __init__(self, verdicts: list[Verdict | None], flags: list[int] | None = None) -> None:
        self._verdicts = verdicts
        self.flags: list[int] = (
            [0 if v is None else 2 if v.anomalous else 1 for v in verdicts]
            if flags is None
            else flags
        )

    def __len__(self) -> int:
        return len(self.flags)

    def get(self, i: int) -> Verdict | None:
        return self._verdicts[i]

    def verdicts(self) -> list[Verdict | None]:
        get = self.get
        return [get(i) for i in range(len(self.flags))]


class StateError(ValueError):
    """Raised when bytes do not hold a snapshot this code can restore."""


class ParamError(ValueError):
    """A parameter check of a `Params` struct that one field fails (the loader names it)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Envelope(msgspec.Struct, array_like=True):
    format: int
    kind: str
    version: int
    params: msgspec.Raw
    state: msgspec.Raw


P = TypeVar("P", bound=msgspec.Struct)
S = TypeVar("S", bound=msgspec.Struct)


class Detector(Generic[P, S]):
    """Base class: subclasses set `kind`, `version`, `Params`, `State` and `update`."""

    kind: ClassVar[str]
    version: ClassVar[int] = 1
    Params: ClassVar[type[msgspec.Struct]]
    State: ClassVar[type[msgspec.Struct]]

    def __init__(self, params: P | None = None, state: S | None = None) -> None:
        self.params: P = params if params is not None else self.Params()  # type: ignore[assignment]
        self.state: S = state if state is not None else self.initial_state()

    def initial_state(self) -> S:
        return self.State()  # type: ignore[return-value]

    def update(self, t: float, x: Any) -> Verdict | None:
        """Feed one observation at event time `t`; returns a verdict when one is due."""
        raise NotImplementedError

    def update_many(self, ts: Sequence[float], xs: Sequence[Any]) -> list[Verdict | None]:
        """Feed observations in time order; equivalent to calling `update` on each."""
        if self.native_batch:
            return self.update_batch(ts, xs).verdicts()
        update = self.update
        return [update(t, x) for t, x in zip(ts, xs, strict=True)]

    #: True when the class overrides `update_batches` with a batch path of its own that
    #: is all or nothing: if it raises, every state is left as it was before the call (so
    #: a caller can replay the observations one by one to find the one that fails);
    #: `update_many` and `update_batch` then go through it. The engine feeds such
    #: detectors a message's points in one call.
    native_batch: ClassVar[bool] = False

    def update_batch(self, ts: Sequence[float], xs: Sequence[Any]) -> VerdictBatch:
        """`update_many` whose verdicts are built on demand (see `VerdictBatch`)."""
        if self.native_batch:
            return self.update_batches([self], [ts], [xs])[0]
        return VerdictBatch(self.update_many(ts, xs))

    @classmethod
    def update_batches(
        cls,
        detectors: Sequence[Self],
        ts: Sequence[Sequence[float]],
        xs: Sequence[Sequence[Any]],
    ) -> list[VerdictBatch]:
        """`update_batch` on each of several distinct detectors of this class."""
        return [d.update_batch(t, x) for d, t, x in zip(detectors, ts, xs, strict=True)]

    def to_bytes(self) -> bytes:
        return _envelope_encoder.encode(
            Envelope(
                FORMAT_VERSION,
                self.kind,
                self.version,
                msgspec.Raw(_msgpack.encode(self.params)),
                msgspec.Raw(_msgpack.encode(self.state)),
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        env = read_envelope(data)
        if env.kind != cls.kind or env.version != cls.version:
            raise StateError(
                f"snapshot holds {env.kind} v{env.version}, expected {cls.kind} v{cls.version}"
            )
        try:
            params = msgspec.msgpack.decode(env.params, type=cls.Params)
            state = msgspec.msgpack.decode(env.state, type=cls.State)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise StateError(f"corrupt {cls.kind} snapshot: {exc}") from exc
        return cls(params, state)  # type: ignore[arg-type]


_msgpack = msgspec.msgpack.Encoder()
_envelope_encoder = msgspec.msgpack.Encoder()


def read_envelope(data: bytes) -> Envelope:
    try:
        env = msgspec.msgpack.decode(data, type=Envelope)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise StateError(f"not a detector snapshot: {exc}") from exc
    if env.format != FORMAT_VERSION:
        raise StateError(f"snapshot format {env.format} is not {FORMAT_VERSION}")
    return env
