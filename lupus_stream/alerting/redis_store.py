"""Alert states in Redis, for the Kafka/Faust runtime.

Delivery is at-least-once and partition ownership moves on rebalance, so two workers
may briefly handle the same alert and any anomaly may be processed twice. This store
makes both harmless:

* every state is stored with a version that grows by one on each write;
* `apply` reads (state, version), or starts from what this store last wrote or read of
  the alert, runs a pure transition and writes back through a Lua compare-and-set that
  fails if the version moved meanwhile, then retries on the fresh state, so a stale
  writer can never overwrite newer state and a transition's events are returned only by
  the call whose write committed; `apply_many` does the same for a batch of alerts with
  their reads in one round trip and their writes in another;
* the same script appends the committed transition's events to a transactional outbox
  list, so a crash between the commit and the publication cannot lose an event: publish
  with `drain_outbox` (in commit order), not from `apply`'s return value;
* a drain marks its batch in flight before publishing and clears the mark in the same
  step that trims the batch, so the next drainer knows when a predecessor died between
  the broker's acknowledgement and the trim, and asks the topic (`published`) which of
  those transitions it already holds instead of publishing them twice;
* `record_event` is a SET NX claim per transition, so a replayed transition is
  notified at most once (e.g. to deduplicate outbox redeliveries downstream).

Layout under `prefix` (default ``lupus:``):

* ``{prefix}alert:{fp}`` hash: ``v`` version (int), ``s`` msgspec JSON of `AlertState`;
* ``{prefix}alerts:active`` set of pending/firing fingerprints, updated by the same
  script as the state, so `active()` never needs SCAN;
* ``{prefix}outbox`` list of undelivered events (msgspec JSON of `AlertEvent`, oldest
  first), appended by the same script as the state;
* ``{prefix}outbox:lock`` short-lived lock (token, PX) held by the one draining worker;
* ``{prefix}outbox:inflight`` present while a batch is being published (its size);
* ``{prefix}notified:{fp}:{status}:{starts_at}:{at}`` notification claims with a TTL;
* ``{prefix}silences`` hash: silence id -> msgspec JSON of `Silence`.

The script touches keys that do not share a hash slot: Redis Cluster is not supported
(use a standalone, Sentinel-managed or managed non-cluster Redis).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from lupus_stream.alerting.lifecycle import AlertState
from lupus_stream.alerting.silences import Silence, decode_silences
from lupus_stream.contracts.records import AlertEvent
from lupus_stream.settings import RedisSettings

Transition = Callable[[AlertState | None], tuple[AlertState | None, list[AlertEvent]]]
"""Pure function of the stored state (None if never seen) to (new state, events).

Returning None or the unchanged state means "nothing to write". It may run more than
once per `apply` (once per conflict), so it must not have side effects.
"""

DEFAULT_PREFIX: Final = "lupus:"
DEFAULT_OUTBOX_TTL: Final = 7 * 24 * 3600
DEFAULT_MAX_ATTEMPTS: Final = 8
DEFAULT_DRAIN_LIMIT: Final = 500
OUTBOX_LOCK_MS: Final = 5_000  # a crashed drainer blocks the others this long
ACTIVE_STATUSES: Final = frozenset({"pending", "firing"})
KNOWN_ALERTS_LIMIT: Final = 10_000  # alerts whose last (state, version) are kept: ~7 MB

Deliver = Callable[[list[AlertEvent]], Awaitable[None]]
"""Publishes a batch of outbox events and returns only once the broker acknowledged all
of them (raise if any send failed)."""

Published = Callable[[list[AlertEvent]], Awaitable[set[str]]]
"""The `transition_id`s of those events that the destination already holds. Asked only
when the previous drain was interrupted between publishing and trimming its batch."""

_log = logging.getLogger(__name__)
_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(AlertState)
_EVENT_DECODER = msgspec.json.Decoder(AlertEvent)

# KEYS[1] state hash, KEYS[2] active set, KEYS[3] outbox list.
# ARGV[1] expected version ('' = unconditional), ARGV[2] state JSON, ARGV[3] fingerprint,
# ARGV[4] '1' if the new state is active, ARGV[5..] event JSONs appended to the outbox
# (only if the write commits). Returns the new version, or -1 on conflict.
_CAS_SCRIPT: Final = """
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[1] ~= '' and current ~= tonumber(ARGV[1]) then
  return -1
end
local version = current + 1
redis.call('HSET', KEYS[1], 'v', version, 's', ARGV[2])
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[2], ARGV[3])
else
  redis.call('SREM', KEYS[2], ARGV[3])
end
for i = 5, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
return version
"""

# KEYS[1] outbox list, KEYS[2] lock, KEYS[3] in-flight mark. ARGV[1] lock token, ARGV[2]
# lock TTL (ms), ARGV[3] most entries to take. Takes the lock and the head of the outbox in
# one step: nil if another drainer holds the lock; an empty array (lock released) if the
# outbox is empty; else {1 if a predecessor's batch was still in flight else 0, entries...},
# with this batch marked in flight.
_TAKE_SCRIPT: Final = """
if not redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return nil
end
local entries = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
if #entries == 0 then
  redis.call('DEL', KEYS[2])
  return {}
end
local interrupted = redis.call('EXISTS', KEYS[3])
redis.call('SET', KEYS[3], #entries)
table.insert(entries, 1, interrupted)
return entries
"""

# KEYS[1] outbox list, KEYS[2] lock, KEYS[3] in-flight mark. ARGV[1] lock token,
# ARGV[2] entries delivered. Removes the delivered head and the in-flight mark, and
# releases the lock, only while the caller still holds it: if it expired (a delivery
# slower than the lock TTL), another drainer may have trimmed meanwhile and trimming again
# would drop entries nobody delivered. Returns 1 if trimmed, else 0.
_FINISH_SCRIPT: Final = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
redis.call('DEL', KEYS[3], KEYS[2])
return 1
"""

# KEYS[1] lock, ARGV[1] token: delete the lock only if it is still ours.
_UNLOCK_SCRIPT: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class AlertConflictError(RuntimeError):
    """`apply` lost the compare-and-set race on every attempt."""


class RedisAlertStore:
    """Versioned alert states in Redis with optimistic concurrency and an event outbox.

    Async counterpart of `AlertStore` plus `apply` (read-transition-CAS that also
    enqueues the committed events), `drain_outbox` (at-least-once publication) and
    `record_event`. `close()` closes the client, which the store takes ownership of.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = DEFAULT_PREFIX,
        *,
        outbox_ttl: int = DEFAULT_OUTBOX_TTL,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if outbox_ttl < 1:
            raise ValueError("outbox_ttl must be at least 1 second")
        self.client = client
        self.prefix = prefix
        self.outbox_ttl = outbox_ttl
        self.max_attempts = max_attempts
        self._active_key = f"{prefix}alerts:active"
        self.silences_key = f"{prefix}silences"
        self.outbox_key = f"{prefix}outbox"
        self.outbox_lock_key = f"{prefix}outbox:lock"
        self.outbox_inflight_key = f"{prefix}outbox:inflight"
        self._cas = client.register_script(_CAS_SCRIPT)
        self._take = client.register_script(_TAKE_SCRIPT)
        self._finish = client.register_script(_FINISH_SCRIPT)
        self._unlock = client.register_script(_UNLOCK_SCRIPT)
        # what this store last wrote or read of each alert, as (state, version): a guess
        # that saves the read before a write (the write's compare-and-set checks it)
        self._known: dict[str, tuple[AlertState | None, int]] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        outbox_ttl: int = DEFAULT_OUTBOX_TTL,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        **client_kwargs: Any,
    ) -> RedisAlertStore:
        """Connect lazily to `url` (``redis://``, ``rediss://`` for TLS, ``unix://``).

        `client_kwargs` go to `redis.asyncio.from_url` unchanged, e.g. ``username`` /
        ``password`` for an ACL user or ``ssl_ca_certs`` / ``ssl_certfile`` /
        ``ssl_keyfile`` / ``ssl_cert_reqs`` for TLS.
        """
        client = aioredis.from_url(url, **client_kwargs)
        return cls(client, prefix, outbox_ttl=outbox_ttl, max_attempts=max_attempts)

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> RedisAlertStore:
        """Connect as the settings say (URL, ACL user, TLS CA, key prefix)."""
        options: dict[str, Any] = {"username": settings.username, "password": settings.password}
        if settings.url.startswith("rediss://"):
            options["ssl_ca_certs"] = settings.ssl_ca_certs
        given = {k: v for k, v in options.items() if v is not None}
        return cls.from_url(settings.url, prefix=settings.key_prefix, **given)

    def state_key(self, fp: str) -> str:
        """The hash holding the version and state of alert `fp`."""
        return f"{self.prefix}alert:{fp}"

    def event_key(self, event: AlertEvent) -> str:
        """The notification claim of one transition (same transition, same key, anywhere)."""
        return f"{self.prefix}notified:{transition_id(event)}"

    async def get(self, fp: str) -> AlertState | None:
        """The state of one alert, or None if it was never seen."""
        return (await self.get_versioned(fp))[0]

    async def get_versioned(self, fp: str) -> tuple[AlertState | None, int]:
        """The state of one alert and its version (0 if it was never written)."""
        raw_version, raw_state = await self.client.hmget(self.state_key(fp), ["v", "s"])
        if raw_state is None:
            return None, 0
        return _DECODER.decode(raw_state), int(raw_version or 0)

    async def version(self, fp: str) -> int:
        """How many times alert `fp` was written (0 if never)."""
        return (await self.get_versioned(fp))[1]

    async def put(self, state: AlertState) -> int:
        """Unconditionally insert or replace `state`; returns its new version.

        Enqueues no events: only `apply` produces transitions.
        """
        version = await self._write(state, expected=None, events=())
        if version < 0:  # pragma: no cover - the script cannot conflict without a version
            raise AlertConflictError(state.fingerprint)
        self._remember(state.fingerprint, state, version)
        return version

    async def apply(self, fp: str, transition: Transition) -> list[AlertEvent]:
        """Run `transition` on the current state of `fp` and commit it atomically.

        The write only succeeds if nobody wrote `fp` since it was read; otherwise the
        transition is re-run on the newer state (up to `max_attempts` times, then
        `AlertConflictError`). The events of the committed transition are appended to
        the outbox by the same atomic write, and also returned (for metrics or logs:
        publish them with `drain_outbox`, which survives a crash right after the commit).
        A transition that changes nothing writes nothing (and normally has no events).

        The first attempt runs on what this store last wrote or read of `fp`, if it has
        it, which saves a read while one worker owns the alert: the compare-and-set
        rejects it if anyone wrote since, and a transition that would change nothing is
        decided again on the stored state, so a stale guess never decides anything.
        """
        attempts = 0
        known = self._known.pop(fp, None)
        if known is not None:  # first on what this store last saw: no read if nobody wrote
            old, version = known
            new, events = self._checked(fp, old, transition)
            if new is not None and not (new == old and not events):
                attempts = 1
                committed = await self._write(new, expected=version, events=events)
                if committed >= 0:
                    self._remember(fp, new, committed)
                    return events
            # a lost race, or nothing to do: decided again on the stored state
        for attempt in range(attempts, self.max_attempts):
            old, version = await self.get_versioned(fp)
            new, events = self._checked(fp, old, transition)
            if new is None or (new == old and not events):
                self._remember(fp, old, version)
                return []
            committed = await self._write(new, expected=version, events=events)
            if committed >= 0:
                self._remember(fp, new, committed)
                return events
            await asyncio.sleep(min(0.001 * 2**attempt, 0.05))
        raise AlertConflictError(f"alert {fp}: {self.max_attempts} write conflicts in a row")

    async def apply_many(self, items: Sequence[tuple[str, Transition]]) -> list[AlertEvent]:
        """`apply` each (fingerprint, transition) in order, in two round trips for the batch.

        The transitions of one alert run in their order on one state and commit in one
        compare-and-set (their events in order), so the outcome is that of applying
        them one by one. The alerts this store knows nothing of are read in one pipeline
        and the writes go in another. An alert whose write loses the race, or whose
        transitions would change nothing on a guessed state, is handed to `apply`
        transition by transition, so a stale guess decides nothing here either. Returns
        the committed events, alert by alert in order of first appearance.
        """
        grouped: dict[str, list[Transition]] = {}
        for fp, transition in items:
            grouped.setdefault(fp, []).append(transition)
        starts = {fp: known for fp in grouped if (known := self._known.pop(fp, None))}
        unknown = [fp for fp in grouped if fp not in starts]
        if unknown:
            async with self.client.pipeline(transaction=False) as pipe:
                for fp in unknown:
                    pipe.hmget(self.state_key(fp), ["v", "s"])
                replies = await pipe.execute()
            for fp, (raw_version, raw_state) in zip(unknown, replies, strict=True):
                state = None if raw_state is None else _DECODER.decode(raw_state)
                starts[fp] = (state, int(raw_version or 0) if state is not None else 0)
        writes: list[tuple[str, AlertState, int, list[AlertEvent]]] = []
        again: list[str] = []  # alerts that go through `apply`, one transition at a time
        for fp, transitions in grouped.items():
            old, version = starts[fp]
            state, events = old, []
            for transition in transitions:
                new, more = self._checked(fp, state, transition)
                if new is not None:
                    state = new
                events.extend(more)
            if state is None or (state == old and not events):
                if fp in unknown:  # decided on the stored state: nothing to do
                    self._remember(fp, old, version)
                else:
                    again.append(fp)
                continue
            writes.append((fp, state, version, events))
        committed: list[AlertEvent] = []
        versions = await self._write_many(writes) if writes else []
        for (fp, state, _, events), version in zip(writes, versions, strict=True):
            if version >= 0:
                self._remember(fp, state, version)
                committed.extend(events)
            else:
                again.append(fp)
        for fp in again:
            for transition in grouped[fp]:
                committed.extend(await self.apply(fp, transition))
        return committed

    @staticmethod
    def _checked(
        fp: str, old: AlertState | None, transition: Transition
    ) -> tuple[AlertState | None, list[AlertEvent]]:
        new, events = transition(old)
        if new is None and events:
            raise ValueError(f"transition for {fp} returned events without a state")
        if new is not None and new.fingerprint != fp:
            raise ValueError(f"transition for {fp} returned the state of {new.fingerprint}")
        return new, events

    def _remember(self, fp: str, state: AlertState | None, version: int) -> None:
        if len(self._known) >= KNOWN_ALERTS_LIMIT:
            self._known.clear()
        self._known[fp] = (state, version)

    async def active(self) -> list[AlertState]:
        """All pending or firing alerts, ordered by fingerprint."""
        members = await self.client.smembers(self._active_key)
        fps = sorted(_text(m) for m in members)
        if not fps:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for fp in fps:
                pipe.hget(self.state_key(fp), "s")
            raws: list[bytes | str | None] = await pipe.execute()
        states = (_DECODER.decode(raw) for raw in raws if raw is not None)
        return [s for s in states if s.status in ACTIVE_STATUSES]

    async def put_silence(self, silence: Silence) -> None:
        """Insert or replace a silence (expiring one is replacing it with an earlier end)."""
        await self.client.hset(self.silences_key, silence.id, _ENCODER.encode(silence))

    async def silences(self) -> list[Silence]:
        """Every silence, expired ones too, by start time."""
        stored = await self.client.hgetall(self.silences_key)
        return decode_silences((_text(k), v) for k, v in stored.items())

    async def drain_outbox(
        self,
        deliver: Deliver,
        limit: int = DEFAULT_DRAIN_LIMIT,
        published: Published | None = None,
    ) -> int:
        """Deliver up to `limit` outbox events, oldest first, then remove them.

        Only one worker drains at a time (a lock with a short TTL): if another one holds
        it, returns 0 without delivering. `deliver` gets the batch and must return only
        once the broker acknowledged every event; the entries are removed after it
        returns. If it raises, nothing is removed, the lock is released and the
        exception propagates, so a later drain delivers the same events again.

        A drain that died between `deliver` and the removal leaves its batch marked in
        flight; the next drain then asks `published` which of the head events the
        destination already holds and delivers only the others. Without `published`
        such a batch is delivered again (at-least-once). A `deliver` slower than the
        lock TTL can still overlap with the next drainer and duplicate a batch; it never
        loses an event.

        Returns how many events left the outbox (0 if it was empty or locked).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        token = uuid.uuid4().hex
        keys = [self.outbox_key, self.outbox_lock_key, self.outbox_inflight_key]
        taken = await self._take(keys=keys, args=[token, OUTBOX_LOCK_MS, limit])
        if not taken:  # locked by another drainer, or nothing to deliver
            return 0
        interrupted, raws = int(taken[0]), taken[1:]
        finished = False
        try:
            events = [_EVENT_DECODER.decode(raw) for raw in raws]
            todo = events
            if interrupted and published is not None:
                held = await published(events)
                todo = [e for e in events if transition_id(e) not in held]
                if len(todo) < len(events):
                    _log.warning(
                        "outbox: %d of %d events were published before an interrupted "
                        "drain could trim them; not publishing them again",
                        len(events) - len(todo),
                        len(events),
                    )
            if todo:
                await deliver(todo)
            trimmed = int(await self._finish(keys=keys, args=[token, len(raws)]))
            finished = True
            if not trimmed:
                _log.warning(
                    "outbox lock expired while delivering %d events: they stay queued and "
                    "will be delivered again",
                    len(raws),
                )
            return len(raws)
        finally:
            if not finished:
                await self._unlock(keys=[self.outbox_lock_key], args=[token])

    async def outbox_size(self) -> int:
        """How many committed events are waiting for `drain_outbox`."""
        return int(await self.client.llen(self.outbox_key))

    async def record_event(self, event: AlertEvent) -> bool:
        """Claim the notification of `event`: True only the first time it is seen.

        Claims expire after `outbox_ttl` seconds, long enough to outlive any replay.
        """
        claimed = await self.client.set(self.event_key(event), 1, nx=True, ex=self.outbox_ttl)
        return bool(claimed)

    async def release_event(self, event: AlertEvent) -> None:
        """Drop the claim of `event`, e.g. when sending its notification failed."""
        await self.client.delete(self.event_key(event))

    async def close(self) -> None:
        """Close the client and its connection pool."""
        await self.client.aclose()

    async def _write(
        self, state: AlertState, expected: int | None, events: Iterable[AlertEvent]
    ) -> int:
        keys, args = self._cas_call(state, expected, events)
        return int(await self._cas(keys=keys, args=args))

    async def _write_many(
        self, writes: Sequence[tuple[str, AlertState, int, list[AlertEvent]]]
    ) -> list[int]:
        """The compare-and-sets of several alerts in one pipeline: each new version, or -1
        where it conflicted. The script is called by its digest; a call that finds it
        missing (Redis restarted) did not run, and is sent again once it is loaded."""
        calls = [self._cas_call(state, version, events) for _, state, version, events in writes]
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            if attempt:
                await self.client.script_load(_CAS_SCRIPT)
            async with self.client.pipeline(transaction=False) as pipe:
                for i in todo:
                    keys, args = calls[i]
                    pipe.evalsha(self._cas.sha, len(keys), *keys, *args)
                for i, reply in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
            todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
            if not todo:
                break
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [int(r) for r in replies]

    def _cas_call(
        self, state: AlertState, expected: int | None, events: Iterable[AlertEvent]
    ) -> tuple[list[str], list[str | bytes]]:
        args: list[str | bytes] = [
            "" if expected is None else str(expected),
            _ENCODER.encode(state),
            state.fingerprint,
            "1" if state.status in ACTIVE_STATUSES else "0",
        ]
        args.extend(_ENCODER.encode(event) for event in events)
        keys = [self.state_key(state.fingerprint), self._active_key, self.outbox_key]
        return keys, args


def transition_id(event: AlertEvent) -> str:
    """Names one transition: the same alert, status, start and time give the same id."""
    return (
        f"{event.fingerprint}:{event.status}:"
        f"{event.starts_at.timestamp()!r}:{event.at.timestamp()!r}"
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
