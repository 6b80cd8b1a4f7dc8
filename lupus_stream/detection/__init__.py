"""Pure detection algorithms: no I/O, no clocks, no asyncio; state serialisable to bytes."""
