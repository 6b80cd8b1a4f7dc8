"""The monitor file the runtime tests share: one product, one threshold monitor on
`orders` (a point above 100 is an incident), with or without an alert policy."""

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
