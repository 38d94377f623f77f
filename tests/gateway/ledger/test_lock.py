"""One gateway process per SQLite ledger (gateway/ledger/lock.py)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from llmbudget_gateway.ledger.lock import LedgerLock

HOLD = """
import sys, time
from pathlib import Path
from llmbudget_gateway.ledger.lock import LedgerLock
assert LedgerLock(Path(sys.argv[1])).try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_the_next_process_waits_until_the_previous_one_is_gone(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(ledger)], stdout=subprocess.PIPE, text=True
    )
    lock = LedgerLock(ledger)

    async def scenario() -> float:
        waiting = asyncio.create_task(lock.acquire(poll=0.05))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        holder.kill()  # even SIGKILL drops the lock: a crash never leaves it held
        return await asyncio.wait_for(waiting, 10)

    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert not lock.try_acquire()  # another process has it
        assert asyncio.run(scenario()) >= 0.3
        lock.release()
        assert LedgerLock(ledger).try_acquire()
    finally:
        holder.kill()
        holder.wait()
