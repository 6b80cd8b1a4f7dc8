"""RedisAlertStore and AsyncAlertProcessor against a real Redis (LUPUS_TEST_REDIS_URL)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import pytest
import redis

from lupus_stream.alerting.async_pipeline import AsyncAlertProcessor
from lupus_stream.alerting.fingerprint import alert_labels, fingerprint
from lupus_stream.alerting.lifecycle import AlertState, on_anomaly
from lupus_stream.alerting.pipeline import AlertProcessor
from lupus_stream.alerting.redis_store import AlertConflictError, RedisAlertStore, transition_id
from lupus_stream.alerting.silences import Silence
from lupus_stream.alerting.sqlite_store import SqliteAlertStore
from lupus_stream.contracts.records import AlertEvent, Anomaly
from lupus_stream.monitors.spec import Monitor
from tests.integration.kafka_harness import service

T = TypeVar("T")
T0 = datetime(2024, 5, 1, tzinfo=UTC)
HOUR = 3600.0


@pytest.fixture
def redis_url() -> str:
    return service("LUPUS_TEST_REDIS_URL")


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test only; every key under it is deleted afterwards."""
    value = f"lupus-test:{uuid.uuid4().hex}:"
    yield value
    with redis.Redis.from_url(redis_url) as client:
        keys = list(client.scan_iter(match=f"{value}*", count=1000))
        if keys:
            client.delete(*keys)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def make_monitor(**alert: Any) -> Monitor:
    raw = {"name": "ctr", "signal": {"kind": "metric", "name": "ctr"}, "alert": alert}
    return msgspec.structs.replace(msgspec.convert(raw, type=Monitor), product="p")


def make_anomaly(aid: str, hours: float, state: str = "anomalous") -> Anomaly:
    return Anomaly(
        id=aid,
        product="p",
        monitor="p/ctr",
        series={"region": "eu"},
        ts=T0 + timedelta(hours=hours),
        state=state,  # type: ignore[arg-type]
        kind="level",
        detector="zscore",
        score=3.0,
        value=0.1,
    )


def lookup(monitor: Monitor) -> Any:
    def monitor_for(monitor_id: str) -> tuple[Monitor, str]:
        if monitor_id != monitor.id:
            raise KeyError(monitor_id)
        return monitor, "oncall"

    return monitor_for


MONITOR = make_monitor(**{"for": "1h", "keep_firing_for": "30m"})
FP = fingerprint(alert_labels(make_anomaly("x", 0), MONITOR))
STORY = [
    make_anomaly("a1", 0),
    make_anomaly("a2", 0.5),
    make_anomaly("a3", 1),  # pending for 1h: fires
    make_anomaly("a4", 1.5),
    make_anomaly("r1", 2, "recovered"),  # keeps firing until 2.5h
]
TICK_EARLY = (T0 + timedelta(hours=2.4)).timestamp()
TICK_DUE = (T0 + timedelta(hours=3)).timestamp()


def make_state(fp: str, status: str) -> AlertState:
    return AlertState(
        fingerprint=fp,
        product="p",
        monitor="p/ctr",
        receiver="oncall",
        labels={"alertname": "ctr", "fp": fp},
        status=status,  # type: ignore[arg-type]
    )


def statuses(events: list[AlertEvent]) -> list[str]:
    return [e.status for e in events]


@pytest.mark.parametrize("name", ["LUPUS_TEST_REDIS_URL", "LUPUS_TEST_KAFKA"])
def test_a_missing_service_fails_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """Every integration test reads its services through `service`."""
    monkeypatch.delenv(name, raising=False)
    with pytest.raises(RuntimeError, match=f"{name} not set: run the tests with"):
        service(name)


def test_fire_resolve_round_trip_matches_sqlite_and_replays_are_noops(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    sync_store = SqliteAlertStore(tmp_path / "alerts.db")
    reference = AlertProcessor(lookup(MONITOR), sync_store)
    expected = [ev for a in STORY for ev in reference.process(a)]
    expected += reference.tick(TICK_EARLY) + reference.tick(TICK_DUE)
    sync_store.close()
    assert statuses(expected) == ["firing", "resolved"]

    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        proc = AsyncAlertProcessor(lookup(MONITOR), store)
        events: list[AlertEvent] = []
        events += await proc.process(STORY[0])
        assert [s.status for s in await store.active()] == ["pending"]
        for anomaly in STORY[1:]:
            events += await proc.process(anomaly)
        assert [s.status for s in await store.active()] == ["firing"]
        assert await proc.tick(TICK_EARLY) == []
        events += await proc.tick(TICK_DUE)
        assert events == expected
        assert events[1].at == T0 + timedelta(hours=2.5)
        assert await store.active() == []
        final = await store.get(FP)
        assert final is not None and final.status == "resolved"
        version = await store.version(FP)
        assert version == len(STORY) + 1  # one write per anomaly, one for the resolution

        # At-least-once redelivery: the whole story again, then ticks again.
        replay: list[AlertEvent] = []
        for anomaly in STORY:
            replay += await proc.process(anomaly)
        replay += await proc.tick(TICK_DUE) + await proc.tick(TICK_DUE + HOUR)
        assert replay == []
        assert await store.version(FP) == version
        assert await store.get(FP) == final
        await store.close()

    run(scenario())


def test_stale_writer_loses_the_race_and_emits_nothing(redis_url: str, prefix: str) -> None:
    """Worker A reads, worker B (other client, other thread) commits, A's write must fail."""
    monitor = make_monitor()  # fires on the first anomaly
    anomaly = make_anomaly("a1", 0)
    calls: list[AlertState | None] = []
    b_events: list[AlertEvent] = []

    async def worker_b() -> None:
        store_b = RedisAlertStore.from_url(redis_url, prefix=prefix)
        b_events.extend(await AsyncAlertProcessor(lookup(monitor), store_b).process(anomaly))
        await store_b.close()

    def transition_a(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        calls.append(state)
        if len(calls) == 1:  # between A's read and A's write, B processes the same anomaly
            intruder = threading.Thread(target=lambda: run(worker_b()))
            intruder.start()
            intruder.join()
        return on_anomaly(state, anomaly, monitor, "oncall")

    async def scenario() -> list[AlertEvent]:
        store_a = RedisAlertStore.from_url(redis_url, prefix=prefix)
        events = await store_a.apply(FP, transition_a)
        assert await store_a.version(FP) == 1
        state = await store_a.get(FP)
        assert state is not None and state.status == "firing"
        await store_a.close()
        return events

    a_events = run(scenario())
    assert calls[0] is None and calls[1] is not None  # A retried on B's committed state
    assert statuses(a_events + b_events) == ["firing"]
    assert a_events == []


def test_concurrent_apply_from_two_clients_fires_once(redis_url: str, prefix: str) -> None:
    monitor = make_monitor(keep_firing_for="30m")
    anomaly = make_anomaly("a1", 0)

    async def scenario() -> None:
        stores = [RedisAlertStore.from_url(redis_url, prefix=prefix) for _ in range(2)]
        procs = [AsyncAlertProcessor(lookup(monitor), s) for s in stores]
        results = await asyncio.gather(*(procs[i % 2].process(anomaly) for i in range(20)))
        fired = [ev for events in results for ev in events]
        assert statuses(fired) == ["firing"]
        assert await stores[0].version(FP) == 1
        assert [s.fingerprint for s in await stores[1].active()] == [FP]

        # Concurrent ticks after recovery resolve exactly once as well.
        await procs[0].process(make_anomaly("r1", 1, "recovered"))
        ticks = await asyncio.gather(*(procs[i % 2].tick(TICK_DUE) for i in range(10)))
        resolved = [ev for events in ticks for ev in events]
        assert statuses(resolved) == ["resolved"]
        assert await stores[0].active() == []
        assert await stores[1].version(FP) == 3
        for store in stores:
            await store.close()

    run(scenario())


def test_apply_gives_up_after_max_attempts(redis_url: str, prefix: str) -> None:
    attempts: list[int] = []
    sync_client = redis.Redis.from_url(redis_url)

    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix, max_attempts=3)
        await store.put(make_state(FP, "pending"))

        def always_conflicting(
            state: AlertState | None,
        ) -> tuple[AlertState | None, list[AlertEvent]]:
            attempts.append(1)
            sync_client.hincrby(store.state_key(FP), "v", 1)  # someone else always wins
            assert state is not None
            return msgspec.structs.replace(state, status="firing"), []

        with pytest.raises(AlertConflictError):
            await store.apply(FP, always_conflicting)
        state = await store.get(FP)
        assert state is not None and state.status == "pending"
        assert await store.version(FP) == 1 + 3
        await store.close()

    run(scenario())
    sync_client.close()
    assert len(attempts) == 3


def test_record_event_claims_each_transition_once(redis_url: str, prefix: str) -> None:
    firing = AlertEvent(
        fingerprint=FP,
        status="firing",
        at=T0,
        product="p",
        monitor="p/ctr",
        receiver="oncall",
        labels={"alertname": "ctr"},
        annotations={},
        starts_at=T0,
    )
    resolved = msgspec.structs.replace(
        firing, status="resolved", at=T0 + timedelta(hours=1), ends_at=T0 + timedelta(hours=1)
    )
    refired = msgspec.structs.replace(
        firing, at=T0 + timedelta(hours=2), starts_at=T0 + timedelta(hours=2)
    )

    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix, outbox_ttl=600)
        other = RedisAlertStore.from_url(redis_url, prefix=prefix)
        assert await store.record_event(firing) is True
        assert await store.record_event(firing) is False
        assert (
            await other.record_event(
                msgspec.json.decode(msgspec.json.encode(firing), type=AlertEvent)
            )
            is False
        )
        assert await store.record_event(resolved) is True
        assert await store.record_event(refired) is True
        assert await other.record_event(refired) is False
        ttl = await store.client.ttl(store.event_key(firing))
        assert 0 < ttl <= 600
        await store.release_event(resolved)  # e.g. the webhook failed: retry later
        assert await other.record_event(resolved) is True
        assert await store.record_event(resolved) is False
        await store.close()
        await other.close()

    run(scenario())


def test_put_active_and_persistence_across_clients(redis_url: str, prefix: str) -> None:
    states = [make_state(f"fp{i}", s) for i, s in enumerate(["firing", "pending", "resolved"])]

    async def write() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        for state in states:
            assert await store.put(state) == 1
        assert await store.put(make_state("fp3", "inactive")) == 1
        assert await store.put(msgspec.structs.replace(states[1], status="firing")) == 2
        await store.close()

    async def read() -> None:
        store = RedisAlertStore(redis.asyncio.Redis.from_url(redis_url), prefix)
        assert await store.get("fp2") == states[2]
        assert await store.get("missing") is None
        assert await store.get_versioned("missing") == (None, 0)
        assert [(s.fingerprint, s.status) for s in await store.active()] == [
            ("fp0", "firing"),
            ("fp1", "firing"),
        ]
        await store.put(msgspec.structs.replace(states[0], status="resolved"))
        assert [s.fingerprint for s in await store.active()] == ["fp1"]
        assert await store.version("fp0") == 2
        await store.close()

    async def read_decoded() -> None:
        # Clients built with decode_responses=True (str replies) work the same.
        store = RedisAlertStore.from_url(redis_url, prefix=prefix, decode_responses=True)
        assert [s.fingerprint for s in await store.active()] == ["fp1"]
        assert await store.get_versioned("fp2") == (states[2], 1)
        await store.close()

    run(write())
    run(read())
    run(read_decoded())


def test_prefixes_isolate_stores(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        one = RedisAlertStore.from_url(redis_url, prefix=f"{prefix}one:")
        two = RedisAlertStore.from_url(redis_url, prefix=f"{prefix}two:")
        await one.put(make_state("fp", "firing"))
        assert await two.get("fp") is None
        assert await two.active() == []
        await one.close()
        await two.close()

    run(scenario())


def test_from_url_passes_tls_and_acl_options_through() -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(
            "rediss://redis.invalid:6380/2",
            prefix="x:",
            username="lupus",
            password="secret",
            ssl_cert_reqs="required",
        )
        pool = store.client.connection_pool
        assert pool.connection_class is redis.asyncio.SSLConnection
        assert pool.connection_kwargs["username"] == "lupus"
        assert pool.connection_kwargs["password"] == "secret"
        assert pool.connection_kwargs["db"] == 2
        assert store.state_key("fp") == "x:alert:fp"
        await store.close()  # never connected: closing is still fine

    run(scenario())


# --- Transactional outbox -------------------------------------------------------------


def make_event(fp: str, hours: float = 0) -> AlertEvent:
    at = T0 + timedelta(hours=hours)
    return AlertEvent(
        fingerprint=fp,
        status="firing",
        at=at,
        product="p",
        monitor="p/ctr",
        receiver="oncall",
        labels={"alertname": "ctr", "fp": fp},
        annotations={},
        starts_at=at,
    )


async def enqueue(store: RedisAlertStore, fp: str, hours: float = 0) -> AlertEvent:
    """Commit one firing transition of `fp` through `apply`; returns its event."""
    event = make_event(fp, hours)

    def fire(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        return make_state(fp, "firing"), [event]

    assert await store.apply(fp, fire) == [event]
    return event


class Collector:
    """A `deliver` that records every batch (and can fail or stall on demand)."""

    def __init__(self, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.batches: list[list[AlertEvent]] = []
        self.fail = fail
        self.delay = delay

    @property
    def delivered(self) -> list[AlertEvent]:
        return [ev for batch in self.batches for ev in batch]

    async def __call__(self, events: list[AlertEvent]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        self.batches.append(events)


def test_outbox_gets_events_exactly_when_committed(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        proc = AsyncAlertProcessor(lookup(MONITOR), store)
        assert await store.outbox_size() == 0
        committed: list[AlertEvent] = []
        for anomaly in STORY:
            committed += await proc.process(anomaly)
            assert await store.outbox_size() == len(committed)
        committed += await proc.tick(TICK_DUE)
        assert statuses(committed) == ["firing", "resolved"]
        assert await store.outbox_size() == 2

        # Replays commit nothing and enqueue nothing.
        for anomaly in STORY:
            assert await proc.process(anomaly) == []
        assert await proc.tick(TICK_DUE + HOUR) == []
        assert await store.outbox_size() == 2

        # put() is an unconditional write, not a transition: no events.
        await store.put(make_state("other", "firing"))
        await store.put(make_state(FP, "pending"))
        assert await store.outbox_size() == 2

        raw = await store.client.lrange(store.outbox_key, 0, -1)
        assert [msgspec.json.decode(r, type=AlertEvent) for r in raw] == committed
        await store.close()

    run(scenario())


def test_lost_cas_race_enqueues_nothing(redis_url: str, prefix: str) -> None:
    sync_client = redis.Redis.from_url(redis_url)

    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix, max_attempts=2)

        def loses(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
            sync_client.hincrby(store.state_key(FP), "v", 1)  # someone else always wins
            return make_state(FP, "firing"), [make_event(FP)]

        with pytest.raises(AlertConflictError):
            await store.apply(FP, loses)
        assert await store.outbox_size() == 0

        # Many racing workers on one anomaly: one commit, one outbox entry.
        monitor = make_monitor()
        stores = [RedisAlertStore.from_url(redis_url, prefix=prefix) for _ in range(2)]
        await stores[0].client.delete(stores[0].state_key(FP))
        procs = [AsyncAlertProcessor(lookup(monitor), s) for s in stores]
        anomaly = make_anomaly("a1", 0)
        results = await asyncio.gather(*(procs[i % 2].process(anomaly) for i in range(20)))
        assert statuses([ev for events in results for ev in events]) == ["firing"]
        assert await store.outbox_size() == 1
        for s in [store, *stores]:
            await s.close()

    run(scenario())
    sync_client.close()


def test_drain_outbox_delivers_in_order_and_empties_it(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        expected = [await enqueue(store, f"fp{i}", i) for i in range(5)]
        collect = Collector()
        assert await store.drain_outbox(collect, limit=2) == 2
        assert await store.outbox_size() == 3
        assert await store.drain_outbox(collect) == 3
        assert collect.batches == [expected[:2], expected[2:]]
        assert await store.outbox_size() == 0
        assert await store.drain_outbox(collect) == 0  # empty: deliver is not called
        assert len(collect.batches) == 2
        assert await store.client.exists(store.outbox_lock_key) == 0
        with pytest.raises(ValueError):
            await store.drain_outbox(collect, limit=0)
        await store.close()

        # Clients with decode_responses=True read the outbox the same way.
        decoded = RedisAlertStore.from_url(redis_url, prefix=prefix, decode_responses=True)
        event = await enqueue(decoded, "fp9")
        collect = Collector()
        assert await decoded.drain_outbox(collect) == 1
        assert collect.delivered == [event]
        await decoded.close()

    run(scenario())


def test_failed_delivery_keeps_everything_for_the_next_drain(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        expected = [await enqueue(store, f"fp{i}", i) for i in range(3)]
        with pytest.raises(ConnectionError, match="broker down"):
            await store.drain_outbox(Collector(fail=ConnectionError("broker down")))
        assert await store.outbox_size() == 3
        assert await store.client.exists(store.outbox_lock_key) == 0  # lock released
        collect = Collector()
        assert await store.drain_outbox(collect) == 3
        assert collect.delivered == expected
        assert await store.outbox_size() == 0
        await store.close()

    run(scenario())


def test_drain_outbox_skips_while_another_worker_holds_the_lock(
    redis_url: str, prefix: str
) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        await enqueue(store, "fp0")
        await store.client.set(store.outbox_lock_key, "someone-else", px=30_000)
        collect = Collector()
        assert await store.drain_outbox(collect) == 0
        assert collect.batches == []
        assert await store.client.get(store.outbox_lock_key) == b"someone-else"  # untouched
        ttl = await store.client.pttl(store.outbox_lock_key)
        assert 0 < ttl <= 30_000
        await store.close()

    run(scenario())


def test_concurrent_drainers_never_deliver_an_entry_twice(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        stores = [RedisAlertStore.from_url(redis_url, prefix=prefix) for _ in range(3)]
        expected = [await enqueue(stores[0], f"fp{i:02d}", i) for i in range(20)]
        collects = [Collector(delay=0.01) for _ in stores]
        skipped = 0
        while await stores[0].outbox_size():
            counts = await asyncio.gather(
                *(s.drain_outbox(c, limit=3) for s, c in zip(stores, collects, strict=True))
            )
            assert sum(1 for n in counts if n) == 1  # exactly one drainer got the lock
            skipped += counts.count(0)
        assert skipped > 0
        delivered = [ev for c in collects for ev in c.delivered]
        assert len(delivered) == len(expected)
        assert sorted(delivered, key=lambda e: e.fingerprint) == expected
        batches = sorted((b for c in collects for b in c.batches), key=lambda b: b[0].at)
        assert [ev for b in batches for ev in b] == expected  # head-first, in commit order
        for s in stores:
            await s.close()

    run(scenario())


def test_expired_lock_never_trims_entries_nobody_delivered(redis_url: str, prefix: str) -> None:
    """A delivery slower than the lock TTL may duplicate a batch but never drops one."""

    async def scenario() -> None:
        slow = RedisAlertStore.from_url(redis_url, prefix=prefix)
        fast = RedisAlertStore.from_url(redis_url, prefix=prefix)
        expected = [await enqueue(slow, f"fp{i}", i) for i in range(3)]
        fast_collect = Collector()
        slow_batches: list[list[AlertEvent]] = []

        async def slow_deliver(events: list[AlertEvent]) -> None:
            await slow.client.delete(slow.outbox_lock_key)  # the lock TTL ran out
            assert await fast.drain_outbox(fast_collect, limit=1) == 1
            slow_batches.append(events)

        assert await slow.drain_outbox(slow_deliver, limit=2) == 2
        assert slow_batches == [expected[:2]]
        assert fast_collect.delivered == expected[:1]
        # The slow drainer did not trim: e1 (delivered twice) and e2 are still queued.
        remaining = Collector()
        assert await fast.drain_outbox(remaining) == 2
        assert remaining.delivered == expected[1:]
        await slow.close()
        await fast.close()

    run(scenario())


def test_crash_after_commit_still_delivers_the_firing_event_once(
    redis_url: str, prefix: str
) -> None:
    monitor = make_monitor()  # fires on the first anomaly
    anomaly = make_anomaly("a1", 0)

    async def crashed_worker() -> list[AlertEvent]:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        events = await AsyncAlertProcessor(lookup(monitor), store).process(anomaly)
        # The worker dies here: committed in Redis, never sent to the alerts topic.
        await store.close()
        return events

    async def next_worker() -> list[AlertEvent]:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        proc = AsyncAlertProcessor(lookup(monitor), store)
        assert await proc.process(anomaly) == []  # redelivered: already applied
        assert await store.outbox_size() == 1
        sent = Collector()
        # The first send after the restart fails too: nothing is lost either.
        with pytest.raises(TimeoutError):
            await store.drain_outbox(Collector(fail=TimeoutError()))
        assert await store.drain_outbox(sent) == 1
        assert await store.drain_outbox(sent) == 0
        assert await proc.process(anomaly) == []
        assert await store.drain_outbox(sent) == 0
        await store.close()
        return sent.delivered

    committed = run(crashed_worker())
    assert statuses(committed) == ["firing"]
    delivered = run(next_worker())
    assert delivered == committed


class Killed(BaseException):
    """The worker dies after the broker acknowledged its batch, before the trim."""


def test_interrupted_drain_publishes_only_what_the_topic_lacks(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        expected = [await enqueue(store, f"fp{i}", i) for i in range(4)]
        topic: list[AlertEvent] = []

        async def acked_then_killed(events: list[AlertEvent]) -> None:
            topic.extend(events[:2])  # the broker got two of them, then the process died
            raise Killed

        with pytest.raises(Killed):
            await store.drain_outbox(acked_then_killed)
        assert await store.outbox_size() == 4
        assert await store.client.exists(store.outbox_inflight_key) == 1
        asked: list[list[AlertEvent]] = []

        async def published(events: list[AlertEvent]) -> set[str]:
            asked.append(events)
            return {transition_id(e) for e in topic}

        collect = Collector()
        assert await store.drain_outbox(collect, published=published) == 4
        assert asked == [expected]
        assert collect.delivered == expected[2:]
        assert await store.outbox_size() == 0
        assert await store.client.exists(store.outbox_inflight_key) == 0
        # A clean drain does not ask the topic.
        later = await enqueue(store, "fp9", 9)
        assert await store.drain_outbox(collect, published=published) == 1
        assert len(asked) == 1
        assert collect.delivered[-1] == later
        await store.close()

    run(scenario())


def test_interrupted_drain_without_a_readback_delivers_again(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        expected = [await enqueue(store, f"fp{i}", i) for i in range(2)]

        async def killed(events: list[AlertEvent]) -> None:
            raise Killed

        with pytest.raises(Killed):
            await store.drain_outbox(killed)
        collect = Collector()
        assert await store.drain_outbox(collect) == 2  # at-least-once: nothing is lost
        assert collect.delivered == expected
        await store.close()

    run(scenario())


class CommandCounter:
    """Counts the commands a store's client sends (each one a round trip to Redis)."""

    def __init__(self, store: RedisAlertStore) -> None:
        self.count = 0
        self.names: list[str] = []
        send = store.client.execute_command

        async def counted(*args: Any, **options: Any) -> Any:
            self.count += 1
            self.names.append(str(args[0]))
            return await send(*args, **options)

        store.client.execute_command = counted  # type: ignore[method-assign]


def test_apply_skips_the_read_while_nobody_else_writes(redis_url: str, prefix: str) -> None:
    def toggle(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        status = "firing" if state is None or state.status == "pending" else "pending"
        return make_state(FP, status), []

    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        await store.apply(FP, toggle)  # the first one reads: nothing is known yet
        counter = CommandCounter(store)
        for _ in range(4):
            await store.apply(FP, toggle)
        assert counter.names == ["EVALSHA"] * 4  # the writes only, no HMGET
        assert await store.version(FP) == 5
        state = await store.get(FP)
        assert state is not None and state.status == "firing"
        await store.close()

    run(scenario())


def test_a_stale_guess_never_decides_a_transition(redis_url: str, prefix: str) -> None:
    """Worker A last saw the alert firing; worker B resolved it since."""
    event = make_event(FP, 3)
    seen: list[str | None] = []

    def refire(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        seen.append(None if state is None else state.status)
        if state is not None and state.status == "firing":
            return state, []  # already firing: nothing to do
        return make_state(FP, "firing"), [event]

    def resolve(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        return make_state(FP, "resolved"), []

    def bump(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        seen.append(None if state is None else state.status)
        return make_state(FP, "pending"), []

    async def scenario() -> None:
        a = RedisAlertStore.from_url(redis_url, prefix=prefix)
        b = RedisAlertStore.from_url(redis_url, prefix=prefix)
        assert await a.apply(FP, refire) == [event]  # A: firing, version 1
        await b.apply(FP, resolve)  # B: resolved, version 2
        # on A's guess (firing) nothing would change: decided again on the stored state
        assert await a.apply(FP, refire) == [event]
        assert seen == [None, "firing", "resolved"]
        assert await a.version(FP) == 3
        assert await a.outbox_size() == 2
        # a write on a stale guess loses the compare-and-set and runs on B's state
        await b.apply(FP, resolve)  # version 4
        seen.clear()
        await a.apply(FP, bump)
        assert seen == ["firing", "resolved"]
        assert await a.version(FP) == 5
        for store in (a, b):
            await store.close()

    run(scenario())


def test_a_drain_takes_two_round_trips_and_an_empty_one_takes_one(
    redis_url: str, prefix: str
) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        await enqueue(store, "fp0")
        assert await store.drain_outbox(Collector()) == 1  # loads the scripts
        expected = [await enqueue(store, f"fp{i}", i) for i in range(1, 4)]
        counter = CommandCounter(store)
        collect = Collector()
        assert await store.drain_outbox(collect) == 3
        assert collect.delivered == expected
        assert counter.count == 2  # take the lock and the batch; trim and unlock
        assert await store.drain_outbox(collect) == 0
        assert counter.count == 3
        assert await store.client.exists(store.outbox_lock_key) == 0
        assert await store.client.exists(store.outbox_inflight_key) == 0
        await store.close()

    run(scenario())


def test_the_remembered_alerts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from lupus_stream.alerting import redis_store

    monkeypatch.setattr(redis_store, "KNOWN_ALERTS_LIMIT", 3)
    store = RedisAlertStore.from_url("redis://127.0.0.1:1")  # never connects
    for i in range(7):
        store._remember(f"fp{i}", make_state(f"fp{i}", "firing"), i + 1)
        assert len(store._known) <= 3
    assert store._known["fp6"] == (make_state("fp6", "firing"), 7)


# --- Batches -----------------------------------------------------------------------------


def regional(anomaly: Anomaly, region: str) -> Anomaly:
    return msgspec.structs.replace(anomaly, id=f"{anomaly.id}-{region}", series={"region": region})


REGIONS = ("eu", "us", "ap")
# the story of each region, interleaved: the same alert recurs within a batch of four
INTERLEAVED = [regional(a, r) for a in STORY for r in REGIONS]


class PipelineCounter:
    """Counts the pipelines a store's client executes, and the commands in them."""

    def __init__(self, store: RedisAlertStore) -> None:
        self.sizes: list[int] = []
        make = store.client.pipeline

        def counted(*args: Any, **kwargs: Any) -> Any:
            pipe = make(*args, **kwargs)
            execute = pipe.execute

            async def run(*a: Any, **k: Any) -> Any:
                self.sizes.append(len(pipe.command_stack))
                return await execute(*a, **k)

            pipe.execute = run
            return pipe

        store.client.pipeline = counted  # type: ignore[method-assign]


def test_apply_many_ends_where_one_by_one_does(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        one = RedisAlertStore.from_url(redis_url, prefix=prefix + "one:")
        many = RedisAlertStore.from_url(redis_url, prefix=prefix + "many:")
        seq = AsyncAlertProcessor(lookup(MONITOR), one)
        batched = AsyncAlertProcessor(lookup(MONITOR), many)
        expected = [ev for a in INTERLEAVED for ev in await seq.process(a)]
        got: list[AlertEvent] = []
        for i in range(0, len(INTERLEAVED), 4):
            chunk = INTERLEAVED[i : i + 4]
            got += await many.apply_many([batched.transition_for(a, []) for a in chunk])
        assert statuses(expected).count("firing") == len(REGIONS)

        def by_alert(events: list[AlertEvent]) -> dict[str, list[AlertEvent]]:
            grouped: dict[str, list[AlertEvent]] = {}
            for ev in events:
                grouped.setdefault(ev.fingerprint, []).append(ev)
            return grouped

        assert by_alert(got) == by_alert(expected)
        fps = sorted(by_alert(expected))
        assert len(fps) == len(REGIONS)
        assert [await many.get(fp) for fp in fps] == [await one.get(fp) for fp in fps]
        assert await many.active() == await one.active()
        assert await many.outbox_size() == await one.outbox_size() == len(expected)
        # one write per alert and batch in which it changed, not one per anomaly
        assert sum([await many.version(fp) for fp in fps]) < len(INTERLEAVED)
        # a redelivered batch changes nothing
        replay = await many.apply_many([batched.transition_for(a, []) for a in INTERLEAVED])
        assert replay == []
        assert await many.outbox_size() == len(expected)
        for store in (one, many):
            await store.close()

    run(scenario())


def test_apply_many_reads_in_one_round_trip_and_writes_in_one(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        proc = AsyncAlertProcessor(lookup(MONITOR), store)
        counter = PipelineCounter(store)
        commands = CommandCounter(store)
        first = [regional(STORY[0], r) for r in REGIONS]
        await store.apply_many([proc.transition_for(a, []) for a in first])  # unknown: read first
        assert counter.sizes == [len(REGIONS), len(REGIONS)]
        counter.sizes.clear()
        second = [regional(STORY[1], r) for r in REGIONS]
        await store.apply_many([proc.transition_for(a, []) for a in second])  # known: write only
        assert counter.sizes == [len(REGIONS)]
        # nothing per alert outside the two pipelines (at most loading the script once)
        assert all(name.startswith("SCRIPT") for name in commands.names), commands.names
        assert commands.count <= 1
        await store.close()

    run(scenario())


def test_apply_many_never_decides_on_a_stale_guess(redis_url: str, prefix: str) -> None:
    """As `apply`: worker A last saw the alert firing, worker B resolved it since."""
    event = make_event(FP, 3)

    def refire(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        if state is not None and state.status == "firing":
            return state, []
        return make_state(FP, "firing"), [event]

    def resolve(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        return make_state(FP, "resolved"), []

    def bump(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
        return make_state(FP, "pending"), []

    async def scenario() -> None:
        a = RedisAlertStore.from_url(redis_url, prefix=prefix)
        b = RedisAlertStore.from_url(redis_url, prefix=prefix)
        assert await a.apply_many([(FP, refire)]) == [event]  # version 1
        await b.apply(FP, resolve)  # version 2
        # a no-op on A's guess (firing) is decided again on the stored state
        assert await a.apply_many([(FP, refire)]) == [event]
        assert await a.version(FP) == 3
        # a write on a stale guess loses the compare-and-set and runs on B's state
        await b.apply(FP, resolve)  # version 4
        assert await a.apply_many([(FP, bump), (FP, refire)]) == [event]
        assert await a.version(FP) == 6  # one by one after the lost race: two writes
        state = await a.get(FP)
        assert state is not None and state.status == "firing"
        assert await a.outbox_size() == 3
        for store in (a, b):
            await store.close()

    run(scenario())


def test_apply_many_loads_the_script_when_redis_lost_it(redis_url: str, prefix: str) -> None:
    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        await enqueue(store, "fp0")  # known, so the next batch is a write only
        await store.client.script_flush()
        event = make_event("fp0", 1)

        def refire(state: AlertState | None) -> tuple[AlertState | None, list[AlertEvent]]:
            return make_state("fp0", "pending"), [event]

        assert await store.apply_many([("fp0", refire)]) == [event]
        assert await store.version("fp0") == 2
        await store.close()

    run(scenario())


def test_silences_mute_and_release_as_with_sqlite(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """The silence story of tests/alerting/test_silences.py through Redis: the same
    transitions, muted the same way, and the outbox holds them for the notifiers."""
    window = Silence(
        id="s1",
        matchers={"region": "eu"},
        starts_at=T0.timestamp() + HOUR,
        ends_at=T0.timestamp() + 3 * HOUR,
        created_by="me",
        comment="maintenance",
    )
    story = [
        make_anomaly("a0", 0),
        make_anomaly("r1", 1.5, "recovered"),
        make_anomaly("a2", 2),
    ]
    ticks = [T0.timestamp() + h * HOUR for h in (2.5, 4, 5)]
    monitor = make_monitor()
    sync_store = SqliteAlertStore(tmp_path / "alerts.db")
    sync_store.put_silence(window)
    reference = AlertProcessor(lookup(monitor), sync_store)
    expected = [ev for a in story for ev in reference.process(a)]
    for now in ticks:
        expected += reference.tick(now)
    sync_store.close()
    assert [(e.status, e.silenced_by) for e in expected] == [
        ("firing", []),
        ("resolved", ["s1"]),
        ("firing", ["s1"]),
        ("firing", []),
    ]

    async def scenario() -> None:
        store = RedisAlertStore.from_url(redis_url, prefix=prefix)
        await store.put_silence(window)
        assert await store.silences() == [window]
        proc = AsyncAlertProcessor(lookup(monitor), store)
        events: list[AlertEvent] = []
        for anomaly in story:
            events += await proc.process(anomaly)
        for now in ticks:
            events += await proc.tick(now)
        assert events == expected
        delivered: list[AlertEvent] = []

        async def deliver(batch: list[AlertEvent]) -> None:
            delivered.extend(batch)

        await store.drain_outbox(deliver)
        assert delivered == expected
        await store.close()

    run(scenario())
