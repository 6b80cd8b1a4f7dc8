"""The producer SDK without a broker: validation, routing, batching, error reporting.

The Kafka producer is replaced by `FakeProducer`; `tests/integration/test_client_kafka.py`
runs the same client against a real broker.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pytest

from lupus_stream.client import (
    AsyncLupusClient,
    BacklogFullError,
    Batcher,
    LupusClient,
    LupusSendError,
    async_client,
)
from lupus_stream.client.records import build_metric
from lupus_stream.contracts import decode_message
from lupus_stream.contracts.records import Label, MetricPoint, PredictionLog, SourceLanded
from lupus_stream.runtimes.kafka.send import signal_key
from lupus_stream.settings import KafkaSettings, Settings

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SETTINGS = Settings(kafka=KafkaSettings(bootstrap_servers="fake:9092", topic_prefix="t."))


class FakeProducer:
    """Stands in for AIOKafkaProducer: records what is sent, fails on request."""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.fail_delivery: Exception | None = None
        self.fail_send: Exception | None = None
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        if self.fail_send is not None:
            raise self.fail_send
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_delivery is not None:
            delivery.set_exception(self.fail_delivery)
        else:
            self.sent.append((topic, key, value))
            delivery.set_result(None)
        return delivery


@pytest.fixture()
def producers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeProducer]]:
    made: list[FakeProducer] = []

    def factory(**options: Any) -> FakeProducer:
        made.append(FakeProducer(**options))
        return made[-1]

    monkeypatch.setattr(async_client, "AIOKafkaProducer", factory)
    yield made


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def decoded(value: bytes, accept: str) -> list[Any]:
    result = decode_message(value, accept=(accept,))
    assert result.errors == []
    return list(result.records)


def metric(name: str = "orders", value: float = 1.0, product: str = "shop") -> MetricPoint:
    return MetricPoint(product=product, name=name, ts=T0, value=value)


# ---------------------------------------------------------------------------------------------
# Validation: every error is a ValueError naming the field, before any broker is involved


def unstarted() -> AsyncLupusClient:
    return AsyncLupusClient(SETTINGS)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.report_metric("shop", "orders", 1.0, ts=datetime(2026, 3, 2)), "ts"),
        (
            lambda c: c.log_prediction("shop", "m", "v1", "r1", {}, 0.5, ts=datetime(2026, 3, 2)),
            "ts",
        ),
        (lambda c: c.log_label("shop", "m", "r1", True, ts=datetime(2026, 3, 2)), "ts"),
        (
            lambda c: c.report_source_landed("shop", "src", "p", 1, landed_at=datetime(2026, 3, 2)),
            "landed_at",
        ),
    ],
)
def test_naive_datetimes_are_rejected(call: Callable[[Any], None], field: str) -> None:
    with pytest.raises(ValueError, match=f"field {field}: naive datetime .*requires a timezone"):
        call(unstarted())


@pytest.mark.parametrize(
    "ts", [datetime(2200, 1, 1, tzinfo=UTC), datetime(1899, 12, 31, 23, 59, tzinfo=UTC)]
)
def test_times_beyond_the_contract_are_rejected_as_the_decoder_would(ts: datetime) -> None:
    client = unstarted()
    with pytest.raises(ValueError, match="field ts: Expected a time from 1900-01-01 to before"):
        client.report_metric("shop", "orders", 1.0, ts=ts)
    with pytest.raises(ValueError, match="field landed_at: Expected a time from 1900-01-01"):
        client.report_source_landed("shop", "src", "p", 1, landed_at=ts)


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.report_metric("shop", "orders", math.nan), "value"),
        (lambda c: c.report_metric("shop", "orders", math.inf), "value"),
        (lambda c: c.report_metric("shop", "orders", np.float32("nan")), "value"),
        (lambda c: c.log_prediction("shop", "m", "v1", "r1", {"x": -math.inf}, 0.5), "features"),
        (lambda c: c.log_prediction("shop", "m", "v1", "r1", {}, math.nan), "prediction"),
        (lambda c: c.log_label("shop", "m", "r1", math.nan), "label"),
    ],
)
def test_nan_and_infinity_are_rejected(call: Callable[[Any], None], field: str) -> None:
    with pytest.raises(ValueError, match=f"field {field}.*not a finite number"):
        call(unstarted())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.report_metric("shop", "bad name", 1.0), r"metric record: field name: .*regex"),
        (lambda c: c.report_metric("", "orders", 1.0), "field product"),
        (lambda c: c.report_metric("shop", "orders", True), "field value: Expected `float"),
        (lambda c: c.report_metric("shop", "orders", "1"), "field value"),
        (lambda c: c.report_metric("shop", "o", 1.0, labels={"bad key": "x"}), r"labels\[key\]"),
        (lambda c: c.report_metric("shop", "o", 1.0, labels={"k": 3}), "field labels"),
        (lambda c: c.report_metric("shop", "o", 1.0, labels=[("k", "v")]), "expected a mapping"),
        (lambda c: c.log_prediction("shop", "m", "v1", "", {}, 1.0), "field request_id"),
        (lambda c: c.log_prediction("shop", "m", "v1", "r", {"f": [1]}, 1.0), "field features"),
        (lambda c: c.log_prediction("shop", "m", "v1", "r", {}, [1, 2]), "field prediction"),
        (lambda c: c.log_label("shop", "m", "r", None), "field label"),
        (lambda c: c.report_source_landed("shop", "src", "p", -1), "field row_count: .*>= 0"),
        (lambda c: c.report_source_landed("shop", "src", "", 1), "field partition"),
        (lambda c: c.report_source_landed("shop", "src", "p", 1.5), "field row_count"),
    ],
)
def test_contract_violations_name_the_field(call: Callable[[Any], None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(unstarted())


def test_a_record_too_large_for_any_message_is_rejected() -> None:
    features: dict[str, float | str | bool | None] = {f"f{i}": "x" * 1000 for i in range(1100)}
    with pytest.raises(ValueError, match=r"prediction record: .* bytes encoded"):
        unstarted().log_prediction("shop", "m", "v1", "r", features, 1.0)


def test_valid_records_need_a_started_client() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        unstarted().report_metric("shop", "orders", 1.0)


def test_settings_come_from_the_environment_and_arguments_override(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LUPUS_SETTINGS", raising=False)
    monkeypatch.delenv("LUPUS_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ValueError, match="no Kafka broker"):
        AsyncLupusClient()
    monkeypatch.setenv("LUPUS_KAFKA_BOOTSTRAP_SERVERS", "env:9092")
    monkeypatch.setenv("LUPUS_KAFKA_TOPIC_PREFIX", "env.")
    from_env = AsyncLupusClient()
    assert from_env.settings.kafka.bootstrap_servers == "env:9092"
    assert from_env.topic(MetricPoint) == "env.lupus.metrics"
    overridden = AsyncLupusClient(bootstrap_servers="arg:9092", topic_prefix="")
    assert overridden.settings.kafka.bootstrap_servers == "arg:9092"
    assert overridden.topic(Label) == "lupus.labels"
    assert SETTINGS.kafka.topic_prefix == "t."  # the caller's settings are not modified
    with pytest.raises(ValueError, match="max_batch"):
        AsyncLupusClient(SETTINGS, max_batch=0)
    with pytest.raises(ValueError, match="linger"):
        AsyncLupusClient(SETTINGS, linger=-1)


# ---------------------------------------------------------------------------------------------
# Batcher: pure buffering logic


def test_batcher_keys_by_topic_and_signal_key() -> None:
    batcher = Batcher(max_batch=10, linger=1.0)
    prediction = PredictionLog(
        product="shop", model="ranker", model_version="v1", request_id="r", ts=T0, prediction=1.0
    )
    label = Label(product="shop", model="ranker", request_id="r", ts=T0, label=True)
    source = SourceLanded(product="shop", source="orders", partition="p", row_count=1, landed_at=T0)
    for record, topic in [
        (metric("orders"), "m"),
        (metric("visits"), "m"),
        (metric("orders", 2.0), "m"),
        (prediction, "p"),
        (label, "l"),  # same signal key as the prediction, other topic: own buffer
        (source, "s"),  # "shop/orders" like the metric, other topic: own buffer
    ]:
        assert batcher.add(topic, record, now=0.0) == []
    assert len(batcher) == 6
    batches = batcher.drain()
    assert [(b.topic, b.key, len(b.records)) for b in batches] == [
        ("m", "shop/orders", 2),
        ("m", "shop/visits", 1),
        ("p", "shop/ranker", 1),
        ("l", "shop/ranker", 1),
        ("s", "shop/orders", 1),
    ]
    assert all(b.key == signal_key(r) for b in batches for r in b.records)
    assert len(batcher) == 0 and batcher.next_deadline() is None
    assert [r.value for r in decoded(batches[0].encode(), "metric")] == [1.0, 2.0]


def test_batcher_emits_full_batches_in_order() -> None:
    batcher = Batcher(max_batch=3, linger=1.0)
    emitted = [b for i in range(7) for b in batcher.add("m", metric(value=float(i)), now=0.0)]
    assert [[r.value for r in b.records] for b in emitted] == [[0, 1, 2], [3, 4, 5]]
    assert len(batcher) == 1
    assert [[r.value for r in b.records] for b in batcher.drain()] == [[6]]


def test_batcher_keeps_messages_under_the_byte_limit() -> None:
    size = len(msgspec.json.encode(metric()))
    batcher = Batcher(max_batch=100, linger=1.0, max_bytes=2 + 3 * size + 2)  # 3 records + ","
    emitted = [b for i in range(10) for b in batcher.add("m", metric(value=float(i)), now=0.0)]
    emitted += batcher.drain()
    assert [len(b.records) for b in emitted] == [3, 3, 3, 1]
    assert all(len(b.encode()) <= batcher.max_bytes for b in emitted)
    assert len(emitted[0].encode()) == batcher.max_bytes  # the accounting is exact
    with pytest.raises(ValueError, match="bytes encoded"):
        Batcher(max_bytes=size).add("m", metric(), now=0.0)


def test_batcher_linger_is_counted_from_the_first_record_of_each_buffer() -> None:
    batcher = Batcher(max_batch=100, linger=0.5)
    batcher.add("m", metric("a"), now=10.0)
    batcher.add("m", metric("b"), now=10.2)
    batcher.add("m", metric("a"), now=10.4)
    assert batcher.next_deadline() == 10.5
    assert batcher.due(10.49) == []
    first = batcher.due(10.5)
    assert [(b.key, len(b.records)) for b in first] == [("shop/a", 2)]
    assert batcher.next_deadline() == pytest.approx(10.7)
    batcher.add("m", metric("a"), now=10.6)  # a new buffer for "a", due after "b"
    assert [b.key for b in batcher.due(11.5)] == ["shop/b", "shop/a"]
    assert batcher.next_deadline() is None


# ---------------------------------------------------------------------------------------------
# AsyncLupusClient with a fake producer


def test_async_client_routes_batches_and_keys_records(producers: list[FakeProducer]) -> None:
    async def main() -> None:
        async with AsyncLupusClient(SETTINGS, max_batch=4, linger=60) as lupus:
            for i in range(10):
                lupus.report_metric("shop", "orders", float(i), ts=T0 + timedelta(minutes=i))
            lupus.report_metric("shop", "visits", None, labels={"region": "eu"})
            lupus.log_prediction("shop", "ranker", "v7", "r1", {"price": 9.5, "c": "x"}, 0.8)
            lupus.log_label("shop", "ranker", "r1", True)
            lupus.report_source_landed("shop", "orders", "2026-03-02", 10)
            assert lupus.pending == 14
            await asyncio.sleep(0.01)  # the send task runs
            assert len(producers[0].sent) == 2  # two full batches of "shop/orders"
            assert lupus.pending == 6
            await lupus.flush()
            assert lupus.pending == 0

    run(main())
    producer = producers[0]
    assert producer.options["acks"] == "all" and producer.options["enable_idempotence"] is True
    assert producer.options["bootstrap_servers"] == "fake:9092"
    assert producer.started and producer.stopped
    by_topic: dict[str, list[tuple[bytes, list[Any]]]] = {}
    for topic, key, value in producer.sent:
        accept = {"t.lupus.metrics": "metric", "t.lupus.predictions": "prediction"}
        accept |= {"t.lupus.labels": "label", "t.lupus.sources": "source"}
        records = decoded(value, accept[topic])
        assert all(signal_key(r).encode() == key for r in records)
        by_topic.setdefault(topic, []).append((key, records))
    orders = [
        r.value for key, rs in by_topic["t.lupus.metrics"] if key == b"shop/orders" for r in rs
    ]
    assert orders == [float(i) for i in range(10)]
    assert [len(rs) for _, rs in by_topic["t.lupus.metrics"]] == [4, 4, 2, 1]
    (_, [visit]) = by_topic["t.lupus.metrics"][3]
    assert visit.value is None and visit.labels == {"region": "eu"}
    assert visit.ts.utcoffset() == timedelta(0)  # ts=None: now, in UTC
    assert abs(visit.ts - datetime.now(UTC)) < timedelta(seconds=30)
    [(_, [prediction])] = by_topic["t.lupus.predictions"]
    assert prediction.features == {"price": 9.5, "c": "x"} and prediction.model_version == "v7"
    assert [len(by_topic[t]) for t in ("t.lupus.labels", "t.lupus.sources")] == [1, 1]


def test_async_client_sends_after_linger_without_flush(producers: list[FakeProducer]) -> None:
    async def sent(count: int) -> None:
        for _ in range(500):  # up to 5 s: the linger is 0.5 s
            if len(producers[0].sent) >= count:
                break
            await asyncio.sleep(0.01)
        assert len(producers[0].sent) == count

    async def main() -> None:
        async with AsyncLupusClient(SETTINGS, linger=0.5) as lupus:
            lupus.report_metric("shop", "orders", 1.0)
            lupus.report_metric("shop", "orders", 2.0)
            await asyncio.sleep(0.01)
            assert producers[0].sent == []  # lingering
            await sent(1)
            assert lupus.pending == 0
            lupus.report_metric("shop", "orders", 3.0)  # a second linger round
            await asyncio.sleep(0.01)
            assert len(producers[0].sent) == 1
            await sent(2)

    run(main())


def test_async_client_reports_send_errors_at_flush(producers: list[FakeProducer]) -> None:
    async def main() -> None:
        lupus = AsyncLupusClient(SETTINGS, linger=60)
        await lupus.start()
        producers[0].fail_delivery = RuntimeError("broker said no")
        lupus.report_metric("shop", "orders", 1.0)
        lupus.report_metric("shop", "orders", 2.0)
        lupus.report_metric("shop", "visits", 3.0)
        with pytest.raises(LupusSendError) as caught:
            await lupus.flush()
        assert caught.value.messages == 2 and caught.value.records == 3
        assert len(caught.value.failures) == 2
        assert "t.lupus.metrics key 'shop/orders' (2 records): RuntimeError: broker said no" in (
            str(caught.value)
        )
        await lupus.flush()  # reported once, then cleared
        assert len(producers) == 1
        lupus.report_metric("shop", "orders", 4.0)
        await lupus.flush()
        # A refused delivery desynchronises aiokafka's idempotent sequence numbers: the
        # next send goes through a new producer.
        assert len(producers) == 2 and producers[0].stopped and not producers[1].stopped
        assert [decoded(v, "metric")[0].value for _, _, v in producers[1].sent] == [4.0]
        producers[1].fail_send = ValueError("message too large")  # raised by send() itself
        lupus.report_metric("shop", "orders", 5.0)
        with pytest.raises(LupusSendError, match="message too large"):
            await lupus.stop()  # stop flushes, reports, and still closes
        assert len(producers) == 2 and producers[1].stopped and lupus.pending == 0
        with pytest.raises(RuntimeError, match="stopped"):
            lupus.report_metric("shop", "orders", 6.0)

    run(main())


def test_async_client_refuses_records_beyond_max_pending(producers: list[FakeProducer]) -> None:
    async def main() -> None:
        async with AsyncLupusClient(SETTINGS, max_batch=2, max_pending=4, linger=60) as lupus:
            for i in range(4):
                lupus.report_metric("shop", "orders", float(i))
            with pytest.raises(BacklogFullError, match="await flush"):
                lupus.report_metric("shop", "orders", 4.0)
            await lupus.flush()
            lupus.report_metric("shop", "orders", 4.0)

    run(main())
    assert sum(len(decoded(v, "metric")) for _, _, v in producers[0].sent) == 5


def test_numpy_and_pandas_values_are_accepted(producers: list[FakeProducer]) -> None:
    async def main() -> None:
        async with AsyncLupusClient(SETTINGS) as lupus:
            lupus.report_metric("shop", "orders", np.float64(1.5), ts=pd.Timestamp(T0))
            lupus.log_prediction(
                "shop", "m", "v1", "r", {"a": np.int64(3), "b": np.bool_(True)}, np.float32(0.5)
            )
            lupus.report_source_landed("shop", "src", "p", np.int64(7), landed_at=T0)

    run(main())
    values = {topic: decoded(v, topic.split(".")[-1][:-1]) for topic, _, v in producers[0].sent}
    [point] = values["t.lupus.metrics"]
    assert point.value == 1.5 and point.ts == T0
    [prediction] = values["t.lupus.predictions"]
    assert prediction.features == {"a": 3.0, "b": True} and prediction.prediction == 0.5
    assert values["t.lupus.sources"][0].row_count == 7


def test_timezones_other_than_utc_are_kept() -> None:
    tz = timezone(timedelta(hours=2))
    record = build_metric("shop", "orders", 1.0, datetime(2026, 3, 2, 14, tzinfo=tz), None)
    assert record.ts == T0 and record.ts.utcoffset() == timedelta(hours=2)


# ---------------------------------------------------------------------------------------------
# LupusClient (threads) with a fake producer


def test_sync_client_is_thread_safe_and_flushes_on_close(producers: list[FakeProducer]) -> None:
    threads_n, per_thread = 8, 300
    with LupusClient(SETTINGS, max_batch=50, linger=0.01) as lupus:

        def work(t: int) -> None:
            for i in range(per_thread):
                lupus.report_metric("shop", f"s{t % 3}", float(t * 1000 + i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with pytest.raises(ValueError, match="naive"):
            lupus.report_metric("shop", "orders", 1.0, ts=datetime(2026, 3, 2))
    with pytest.raises(RuntimeError, match="closed"):
        lupus.report_metric("shop", "orders", 1.0)
    lupus.close()  # idempotent
    assert not lupus._thread.is_alive() and producers[0].stopped
    seen: list[float] = []
    for _, key, value in producers[0].sent:
        records = decoded(value, "metric")
        assert len(records) <= 50 and all(signal_key(r).encode() == key for r in records)
        seen += [r.value for r in records]
    assert sorted(seen) == sorted(float(t * 1000 + i) for t in range(8) for i in range(300))
    for t in range(threads_n):  # each thread's records keep their order
        mine = [v for v in seen if int(v) // 1000 == t]
        assert mine == sorted(mine)


def test_sync_client_flush_raises_send_errors_and_blocks_for_room(
    producers: list[FakeProducer],
) -> None:
    lupus = LupusClient(SETTINGS, max_batch=2, max_pending=2, linger=0.01)
    try:
        started = time.monotonic()
        for i in range(20):  # more than max_pending: waits for the linger sends, no error
            lupus.report_metric("shop", "orders", float(i))
        assert time.monotonic() - started < 10
        lupus.flush()
        producers[0].fail_delivery = RuntimeError("boom")
        lupus.report_metric("shop", "orders", 1.0)
        with pytest.raises(LupusSendError, match="boom"):
            lupus.flush()
        producers[0].fail_delivery = None
    finally:
        lupus.close()
    assert sum(len(decoded(v, "metric")) for _, _, v in producers[0].sent) == 20
    assert len(producers) == 1  # no send after the failure: no new producer was needed


def test_sync_client_close_reports_errors_but_not_over_the_block_error(
    producers: list[FakeProducer],
) -> None:
    with pytest.raises(KeyError), LupusClient(SETTINGS, linger=60) as lupus:
        producers[0].fail_delivery = RuntimeError("boom")
        lupus.report_metric("shop", "orders", 1.0)
        raise KeyError("the caller's own error wins")
    lupus = LupusClient(SETTINGS, linger=60)
    producers[1].fail_delivery = RuntimeError("boom")
    lupus.report_metric("shop", "orders", 1.0)
    with pytest.raises(LupusSendError, match="boom"):
        lupus.close()
    assert not lupus._thread.is_alive()
