"""Silences: label matchers over a time span that mute the notifications of alerts.

As in Alertmanager, a silence changes no alert's state, only whether its transitions
page anyone: a transition whose time falls within a silence that matches its labels
carries that silence's id in `silenced_by`, and notifiers leave it alone. An alert still
firing when the last silence covering it ends gets its `firing` notification then,
stamped at that end (so it does not depend on when the runtime ticks); one that resolves
before that is resolved muted, since its firing was never notified.

Pure: the runtime loads the silences from its store and passes them in.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Annotated

import msgspec
from msgspec.structs import replace

from lupus_stream.alerting.lifecycle import AlertState, firing_event, on_tick
from lupus_stream.contracts.names import NAME_PATTERN_WHOLE, NAME_RULE
from lupus_stream.contracts.records import EARLIEST, LATEST, AlertEvent
from lupus_stream.monitors.matchers import compile_matcher, compile_matchers, split_matcher
from lupus_stream.monitors.spec import AlertPolicy

_NAME = re.compile(NAME_PATTERN_WHOLE)
_EARLIEST, _LATEST = EARLIEST.timestamp(), LATEST.timestamp()
LabelName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NAME_PATTERN_WHOLE)]


class Silence(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Mutes alerts whose labels all match `matchers` from `starts_at` to `ends_at`
    (epoch seconds, the end excluded)."""

    id: str
    matchers: dict[LabelName, str]  # label name -> `value`, `!=value`, `=~re`, `!~re`
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""

    def __post_init__(self) -> None:
        if not self.matchers:
            raise ValueError("a silence needs at least one matcher (it would mute everything)")
        for at in (self.starts_at, self.ends_at):
            if not _EARLIEST <= at < _LATEST:  # NaN and infinities too
                raise ValueError("a silence must start and end between 1900 and 2200 (UTC)")
        if not self.ends_at > self.starts_at:
            raise ValueError("a silence must end after it starts")
        for name, spec in self.matchers.items():
            try:
                compile_matcher(spec)
            except ValueError as exc:
                raise ValueError(f"matcher {name}: {spec!r}: {exc}") from None


_DECODER = msgspec.json.Decoder(Silence)
_log = logging.getLogger(__name__)


def decode_silences(stored: Iterable[tuple[str, bytes | str]]) -> list[Silence]:
    """The silences of a store, (id, JSON) each, by start time; one that no longer reads
    (edited by hand, or written under other rules) is left out with a warning, so it
    cannot stop the others from working."""
    out = []
    for silence_id, raw in stored:
        try:
            out.append(_DECODER.decode(raw))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            _log.warning("silence %s unreadable, ignored: %s", silence_id, exc)
    return sorted(out, key=lambda s: (s.starts_at, s.id))


def new_silence(
    matchers: dict[str, str], starts_at: float, ends_at: float, created_by: str, comment: str
) -> Silence:
    """A silence with a fresh id; ValueError when its matchers or times are not valid.

    Alertmanager's rule, so that the mirror is not refused: unless a matcher is negated
    (`!=`, `!~`), one must be unsatisfied by a missing label (`region=""` or `=~.*` alone
    would mute every alert without a region). Checked here, when a silence is made, not
    when one is read: a silence stored before the rule still reads, mutes, lists and
    expires."""
    for name in matchers:
        if _NAME.match(name) is None:
            raise ValueError(f"matcher {name!r}: the label name breaks the rule: {NAME_RULE}")
    try:
        silence = msgspec.convert(
            {
                "id": uuid.uuid4().hex[:16],
                "matchers": matchers,
                "starts_at": starts_at,
                "ends_at": ends_at,
                "created_by": created_by,
                "comment": comment,
            },
            type=Silence,
        )
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    if all(
        split_matcher(spec)[0] in ("=", "=~") and compile_matcher(spec)(None)
        for spec in silence.matchers.values()
    ):
        raise ValueError(
            "a silence needs a matcher that a missing label does not satisfy "
            "(these would mute every alert without those labels)"
        )
    return silence


def muting(labels: dict[str, str], at: float, silences: Sequence[Silence]) -> tuple[str, ...]:
    """Ids of the silences that mute an alert with `labels` at `at`, in the given order."""
    return tuple(
        s.id
        for s in silences
        if s.starts_at <= at < s.ends_at and compile_matchers(s.matchers)(labels)
    )


def mute(
    state: AlertState, events: list[AlertEvent], silences: Sequence[Silence]
) -> tuple[AlertState, list[AlertEvent]]:
    """Each event with the silences muting it at its time; the state remembers those of
    the last one (a muted `firing` is notified when they are over). The resolution of an
    alert whose firing was muted and never notified is muted by the same silences: nobody
    was told it fired."""
    if not events:
        return state, events
    out = []
    muted = state.silenced_by
    for event in events:
        ids = muting(event.labels, event.at.timestamp(), silences)
        if event.status == "resolved" and not ids:
            ids = muted
        muted = ids
        out.append(replace(event, silenced_by=list(ids)))
    return replace(state, silenced_by=muted), out


def unmute(
    state: AlertState, now: float, silences: Sequence[Silence]
) -> tuple[AlertState, list[AlertEvent]]:
    """The `firing` notification of an alert that fired muted and still fires once no
    silence mutes it at `now`, stamped when the silences that muted it ended."""
    if state.status != "firing" or not state.silenced_by or muting(state.labels, now, silences):
        return state, []
    ends = [s.ends_at for s in silences if s.id in state.silenced_by]
    at = min(max(ends, default=now), now)
    state = replace(state, silenced_by=())
    return mute(state, [firing_event(state, at)], silences)


def on_tick_silenced(
    state: AlertState, now: float, policy: AlertPolicy, silences: Sequence[Silence]
) -> tuple[AlertState, list[AlertEvent]]:
    """`on_tick` with silences: a resolution that fell due, muted or not, then the
    notification of a muted firing whose silences are over."""
    state, resolved = mute(*on_tick(state, now, policy), silences)
    state, notified = unmute(state, now, silences)
    return state, resolved + notified
