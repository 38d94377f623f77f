"""Soak: the gateway at a steady request rate for a long time; its memory must not grow.

Starts `llmbudget-gateway serve --fake-upstream` (the built-in fake provider, so no network)
on its own manifests, sends a steady mix of requests (chat, streamed chat, embeddings, with
rotating project and user tags) at --rps for --minutes, samples the gateway's RSS every
10 s, and reports the growth from the end of the warm-up (--warmup-minutes) to the end.
Pass: RSS growth under 5 %, no request lost (every answered request has its ledger row).

    .venv/bin/python tests/benchmarks/soak.py --minutes 30 --rps 100

(Run it by path: `python -m` from the repository root would shadow the standard library's
operator module with the repo's operator/ folder.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import closing
from pathlib import Path

import aiohttp

KEY = "sk-llmb-soak-key-0000000000000000"
MANIFESTS = textwrap.dedent(f"""\
    apiVersion: llmbudget.io/v1alpha1
    kind: ModelRoute
    metadata: {{name: chat, namespace: llmbudget-system}}
    spec:
      model: gpt-4.1
      backends:
        - {{name: main, provider: OpenAI, baseURL: "http://unused.invalid/v1",
            pricing: {{input: "2", output: "8"}}}}
    ---
    apiVersion: llmbudget.io/v1alpha1
    kind: ModelRoute
    metadata: {{name: embed, namespace: llmbudget-system}}
    spec:
      model: text-embedding-3-small
      backends:
        - {{name: main, provider: OpenAI, baseURL: "http://unused.invalid/v1",
            pricing: {{input: "0.02", output: "0"}}}}
    ---
    apiVersion: llmbudget.io/v1alpha1
    kind: TokenBudget
    metadata: {{name: soak, namespace: soak}}
    spec:
      limits: [{{period: Monthly, amount: "1000000"}}]
      apiKeys: [{{name: default}}]
    ---
    apiVersion: v1
    kind: Secret
    metadata:
      name: soak-default-key
      namespace: soak
      labels: {{llmbudget.io/budget: soak, llmbudget.io/key: default}}
    stringData: {{OPENAI_API_KEY: {KEY}}}
    """)
MESSAGES = [{"role": "user", "content": "summarise the quarterly numbers in two lines"}]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def one(session: aiohttp.ClientSession, base: str, i: int, answered: list[str]) -> bool:
    headers = {
        "Authorization": f"Bearer {KEY}",
        "X-Project": f"project-{i % 7}",
        "X-User-Id": f"user-{i % 101}",
    }
    kind = i % 10
    body: dict[str, object]
    if kind == 9:
        path, body = "/embeddings", {"model": "text-embedding-3-small", "input": f"text {i}"}
    else:
        path = "/chat/completions"
        body = {"model": "gpt-4.1", "messages": MESSAGES, "max_tokens": 64, "stream": kind >= 7}
    try:
        async with session.post(base + path, json=body, headers=headers) as response:
            await response.read()
            if response.status == 200:
                answered.append(response.headers["x-llmbudget-request-id"])
                return True
    except aiohttp.ClientError:
        pass
    return False


async def load(base: str, pid: int, args: argparse.Namespace) -> dict[str, object]:
    answered: list[str] = []
    samples: list[tuple[float, int]] = []
    failures = 0
    tasks: set[asyncio.Task[bool]] = set()
    start = time.monotonic()
    end = start + args.minutes * 60
    next_sample = start
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:
        i = 0
        while (now := time.monotonic()) < end:
            due = int((now - start) * args.rps)
            while i < due:
                task = asyncio.create_task(one(session, base, i, answered))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            if now >= next_sample:
                samples.append((now - start, rss_kib(pid)))
                next_sample += 10
                if len(samples) % 6 == 0:
                    print(
                        f"{(now - start) / 60:5.1f} min  {len(answered):,} answered  "
                        f"RSS {samples[-1][1] / 1024:.1f} MiB",
                        flush=True,
                    )
            await asyncio.sleep(0.005)
        results = await asyncio.gather(*tasks)
        failures = i - len(answered)
        del results
    samples.append((time.monotonic() - start, rss_kib(pid)))
    return {"answered": answered, "samples": samples, "sent": i, "failures": failures}


def stored_ids(workdir: Path, dsn: str | None) -> set[str]:
    """Request ids in the gateway's ledger."""
    if dsn:
        import psycopg

        with psycopg.connect(dsn) as server:
            return {row[0] for row in server.execute("SELECT request_id FROM requests")}
    with closing(sqlite3.connect(workdir / "state" / "ledger.sqlite3")) as db:
        return {row[0] for row in db.execute("SELECT request_id FROM requests")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--warmup-minutes", type=float, default=5)
    parser.add_argument("--rps", type=float, default=100)
    parser.add_argument(
        "--ledger-dsn",
        help="run the gateway on this PostgreSQL ledger instead of SQLite (an empty database "
        "or an llmbudget ledger); rows are checked there",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="llmbudget-soak-"))
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "all.yaml").write_text(MANIFESTS)
    port = free_port()
    gateway = Path(sys.executable).with_name("llmbudget-gateway")
    process = subprocess.Popen(
        [
            str(gateway), "serve", str(workdir / "manifests"), "--port", str(port),
            "--metrics-port", "0", "--state-dir", str(workdir / "state"), "--fake-upstream",
            "--log-level", "warning",
        ],
        cwd=workdir,
        env={**os.environ, "LLMBUDGET_LEDGER_DSN": args.ledger_dsn or ""},
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        result = asyncio.run(load(base, process.pid, args))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    samples: list[tuple[float, int]] = result["samples"]  # type: ignore[assignment]
    answered: list[str] = result["answered"]  # type: ignore[assignment]
    warm = next((kib for at, kib in samples if at >= args.warmup_minutes * 60), samples[0][1])
    final = samples[-1][1]
    peak = max(kib for _, kib in samples)
    growth = (final - warm) * 100 / warm
    missing = len(set(answered) - stored_ids(workdir, args.ledger_dsn))
    ledger = "PostgreSQL" if args.ledger_dsn else "SQLite"
    print(
        f"\nsoak: {args.minutes:g} min at {args.rps:g} req/s, {ledger} ledger, on "
        f"{platform.node()} ({platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()})\n"
        f"  sent {result['sent']:,}, answered {len(answered):,}, failed {result['failures']:,}, "
        f"ledger rows missing {missing}\n"
        f"  RSS after {args.warmup_minutes:g} min warm-up {warm / 1024:.1f} MiB, end "
        f"{final / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB: growth {growth:+.2f} %"
    )
    ok = growth < 5 and missing == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
