"""The monitor file the runtime tests share: one product, one threshold monitor on
`orders` (a point above 100 is an incident), with or without an alert policy; and the
points of `orders` they feed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 3, 2, tzinfo=UTC)

SHOP_ORDERS = """
product: shop
owner: team-shop
receiver: shop-oncall
monitors:
  - name: orders
    signal: {kind: metric, name: orders}
    detector: {kind: threshold, upper: 100}
"""
PAGED = SHOP_ORDERS + "    alert:\n      severity: page\n"
PAGED_WITH_SUMMARY = PAGED + '      annotations: {summary: "orders at {value}"}\n'


def order_point(hour: int, value: float, product: str = "shop", **labels: str) -> dict[str, Any]:
    """A metric point of `orders`, `hour` hours after START."""
    record: dict[str, Any] = {
        "type": "metric",
        "product": product,
        "name": "orders",
        "ts": (START + timedelta(hours=hour)).isoformat(),
        "value": value,
    }
    if labels:
        record["labels"] = labels
    return record
