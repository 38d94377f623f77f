"""One gateway process per SQLite ledger (gateway/ledger/lock.py)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmbudget_gateway.ledger.lock import LedgerLock
from tests.gateway.conftest import TEAM_KEY, GatewayFactory
from tests.gateway.harness import Gateway, budget_manifest, free_port, key_secret, route_manifest

GATEWAY = Path(sys.executable).with_name("llmbudget-gateway")

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


def test_a_failed_start_releases_the_lock(make_gateway: GatewayFactory) -> None:
    """However far startup got (here: the metrics port is taken), the lock is released, so
    the next start on the same state directory does not wait forever."""
    first = make_gateway(start=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        first.metrics_port = busy.getsockname()[1]
        with pytest.raises(RuntimeError):
            first.start()
    again = Gateway(first.manifests, first.state_dir)
    again.start()
    again.stop()


def _serve(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    manifests = tmp_path / "manifests"
    manifests.mkdir(exist_ok=True)
    (manifests / "all.yaml").write_text(
        route_manifest("gpt-4.1", "http://127.0.0.1:9/v1")
        + "---\n"
        + budget_manifest("team", "team", 'limits: [{period: Monthly, amount: "100"}]\n')
        + "---\n"
        + key_secret("team", "team", "default", TEAM_KEY)
    )
    port = free_port()
    process = subprocess.Popen(
        [str(GATEWAY), "serve", str(manifests), "--port", str(port), "--metrics-port", "0",
         "--state-dir", str(tmp_path / "state"), "--log-level", "info", *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, port


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_sigterm_while_waiting_for_the_lock_exits_without_starting(tmp_path: Path) -> None:
    """A replacement Pod deleted while it still waits for the ledger (a rollback, a scale to
    0) exits at once instead of waiting for the lock, starting, then stopping."""
    holder, holder_port = _serve(tmp_path)
    waiter = None
    try:
        deadline = time.monotonic() + 30
        while not _ready(holder_port):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.1)
        waiter, waiter_port = _serve(tmp_path, "--drain-seconds", "3")
        time.sleep(2)  # it waits for the lock
        assert waiter.poll() is None and not _ready(waiter_port)
        waiter.send_signal(signal.SIGTERM)
        assert waiter.wait(timeout=5) != 0  # gone within seconds, not after the holder
        assert holder.poll() is None
        output = waiter.communicate()[0].decode()
        assert "in use by another gateway process" in output
        assert "gateway ready" not in output
    finally:
        for process in (holder, waiter):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
