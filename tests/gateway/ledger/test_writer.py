"""The batching writer: never drops rows, flushes on close, survives failing writes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from llmbudget_gateway.ledger.sqlite import SqliteLedger
from llmbudget_gateway.ledger.writer import LedgerWriter
from tests.gateway.ledger.test_sqlite import record


async def test_close_flushes_everything(tmp_path: Path) -> None:
    store = SqliteLedger(tmp_path / "l.db")
    writer = LedgerWriter(store, flush_interval=60)  # would not flush by itself in time
    writer.start()
    for i in range(2500):
        writer.submit(record(i))
    await writer.close()
    assert SqliteLedger(tmp_path / "l.db").count() == 2500


async def test_failed_writes_are_retried_in_order(tmp_path: Path) -> None:
    store = SqliteLedger(tmp_path / "l.db")
    calls: list[int] = []
    real_write = store.write

    def flaky(records: Any, crossings: Any) -> None:
        calls.append(len(records))
        if len(calls) <= 2:
            raise RuntimeError("disk full")
        real_write(records, crossings)

    store.write = flaky  # type: ignore[method-assign,assignment]
    writer = LedgerWriter(store, flush_interval=0.01)
    writer.start()
    for i in range(10):
        writer.submit(record(i))
    for _ in range(200):
        if writer.written == 10:
            break
        await asyncio.sleep(0.02)
    assert writer.written == 10 and writer.failures == 2
    await writer.close()
    assert SqliteLedger(tmp_path / "l.db").count() == 10


async def test_concurrent_flushes_never_lose_or_duplicate(tmp_path: Path) -> None:
    store = SqliteLedger(tmp_path / "l.db")
    writer = LedgerWriter(store, flush_interval=0.001, max_batch=7)
    writer.start()
    for i in range(500):
        writer.submit(record(i))
        if i % 50 == 0:
            await asyncio.gather(writer.flush(), writer.flush())
    await writer.close()
    reopened = SqliteLedger(tmp_path / "l.db")
    assert reopened.count() == 500 and reopened.total_cost_micros() == 50_000
