"""One gateway process per SQLite ledger: an exclusive lock the next process waits for.

When a Pod with the SQLite ledger is deleted or evicted, its ReplicaSet starts the replacement
at once, and a ReadWriteOnce volume lets both Pods on one node mount the ledger. Two processes
would then admit against two views of the same budgets, and the new one would restore its spend
before the old one has written its last rows. So a process holds an exclusive `flock` on
`<ledger>.lock` from before it reads the ledger until it exits; the next one waits, unready,
until the previous one has drained, flushed and gone. The kernel drops the lock of a process
that dies, SIGKILL included, so a crash never leaves it held. (PostgreSQL ledgers are shared by
design and take no such lock.)
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from llmbudget_gateway.drain import StartupCancelled

log = logging.getLogger("llmbudget.ledger")


class LedgerLock:
    """An exclusive lock on a ledger file, held by this process until `release`."""

    def __init__(self, ledger: Path) -> None:
        self.path = ledger.with_name(ledger.name + ".lock")
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    async def acquire(
        self,
        poll: float = 0.2,
        report_every: float = 10.0,
        stopping: Callable[[], bool] = lambda: False,
    ) -> float:
        """Wait until the lock is ours; returns the seconds waited. Raises StartupCancelled
        if `stopping()` turns true first (SIGTERM while waiting)."""
        started = time.monotonic()
        last_report: float | None = None
        while not self.try_acquire():
            if stopping():
                raise StartupCancelled(f"stopped while waiting for {self.path}")
            now = time.monotonic()
            if last_report is None or now - last_report >= report_every:
                last_report = now
                log.warning(
                    "ledger %s is in use by another gateway process (the previous Pod still "
                    "draining?): waiting for it to stop before serving",
                    self.path.with_suffix(""),
                )
            await asyncio.sleep(poll)
        waited = time.monotonic() - started
        if waited > poll:
            log.info("ledger lock acquired after %.1f s", waited)
        return waited

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
