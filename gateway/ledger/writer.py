"""Batched, ordered ledger writes off the hot path, on one dedicated thread.

`submit` only appends to a buffer. A background task writes the buffer every
`flush_interval` seconds (or as soon as `max_batch` rows wait) in one transaction. A failed
write is retried with backoff and never dropped; `close` (called on SIGTERM through the app's
lifespan) writes everything still buffered before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from llmbudget_gateway.budgets import Crossing
from llmbudget_gateway.ledger.records import LedgerRecord

log = logging.getLogger("llmbudget.ledger")
T = TypeVar("T")


class LedgerStore(Protocol):
    def write(self, records: list[LedgerRecord], crossings: list[Crossing]) -> None: ...
    def close(self) -> None: ...


class LedgerWriter:
    def __init__(
        self, store: LedgerStore, flush_interval: float = 0.05, max_batch: int = 1000
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self._records: list[LedgerRecord] = []
        self._crossings: list[Crossing] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._flushing = asyncio.Lock()
        self.written = 0
        self.failures = 0

    @property
    def depth(self) -> int:
        return len(self._records)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-writer")

    def submit(self, record: LedgerRecord, crossings: list[Crossing] | None = None) -> None:
        self._records.append(record)
        if crossings:
            self._crossings.extend(crossings)
        if len(self._records) >= self.max_batch:
            self._wake.set()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store method on the ledger thread (reads see every flushed write)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _run(self) -> None:
        backoff = self.flush_interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            try:
                await self.flush()
                backoff = self.flush_interval
            except Exception:  # the batch stays buffered; retry with backoff
                self.failures += 1
                log.exception("ledger write failed; %d rows kept for retry", self.depth)
                backoff = min(max(backoff * 2, 0.1), 5.0)

    async def flush(self) -> None:
        """Write everything buffered now. On failure the rows stay buffered, in order."""
        async with self._flushing:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        while self._records or self._crossings:
            records = self._records[: self.max_batch]
            crossings = self._crossings
            self._crossings = []
            try:
                await self.call(self.store.write, records, crossings)
            except BaseException:
                self._crossings = crossings + self._crossings
                raise
            del self._records[: len(records)]
            self.written += len(records)

    async def close(self) -> None:
        """Stop the background task, write everything left, close the store."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        for attempt in range(5):
            try:
                await self.flush()
                break
            except Exception:
                log.exception("final ledger flush failed (attempt %d)", attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))
        if self.depth:
            log.error("ledger closed with %d rows unwritten", self.depth)
        await self.call(self.store.close)
        self._executor.shutdown(wait=True)
