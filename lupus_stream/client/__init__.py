"""Producer SDK: publish metrics, predictions, labels and landed sources to lupus-stream.

Records are validated when they are reported (the same contract the workers decode with),
buffered per (topic, signal key) and sent as one JSON-list message per buffer, keyed by the
signal key so that every record of a series lands on the partition that owns it. A buffer
is sent when it holds `max_batch` records, `linger` seconds after its first record, on
`flush()` and when the client stops. Errors of the sends are raised by the next `flush()`
(or `stop()` / `close()`) as a `LupusSendError`.

In an asyncio service::

    from lupus_stream.client import AsyncLupusClient

    async with AsyncLupusClient(bootstrap_servers="broker:9092") as lupus:
        lupus.report_metric("shop", "orders", 42.0, labels={"region": "eu"})
        lupus.log_prediction("shop", "ranker", "v7", request_id, {"price": 9.5}, 0.83)
        await lupus.flush()  # optional: wait for the broker, raise send errors

In a batch job or a threaded service (the client runs its own event loop in a thread)::

    from lupus_stream.client import LupusClient

    with LupusClient() as lupus:  # settings from LUPUS_KAFKA_* (and LUPUS_SETTINGS)
        for row in rows:
            lupus.log_label("shop", "ranker", row.request_id, row.clicked)
        lupus.report_source_landed("shop", "orders_table", "2026-03-02", row_count=len(rows))

`report_*` / `log_*` validate (raising `ValueError`) and buffer; they do not wait for the
broker unless `max_pending` records are already waiting (then `LupusClient` blocks and
`AsyncLupusClient` raises `BacklogFullError`). `AsyncLupusClient` belongs to the event loop
that started it and is not thread-safe; `LupusClient` may be shared by any number of threads.
"""

from lupus_stream.client.async_client import AsyncLupusClient
from lupus_stream.client.batching import (
    BacklogFullError,
    Batch,
    Batcher,
    LupusSendError,
    SendFailure,
)
from lupus_stream.client.sync_client import LupusClient

__all__ = [
    "AsyncLupusClient",
    "BacklogFullError",
    "Batch",
    "Batcher",
    "LupusClient",
    "LupusSendError",
    "SendFailure",
]
