"""Report latency on a large ledger: N generated request rows (default 10 million) over 60
days, then the admin report queries for the last 30 days, p50/p95 over repeated runs.

    .venv/bin/python tests/benchmarks/bench_reports.py --rows 10000000
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from llmbudget_gateway.ledger import reports
from llmbudget_gateway.ledger.records import LedgerRecord
from llmbudget_gateway.ledger.rollups import to_ms
from llmbudget_gateway.ledger.sqlite import SqliteLedger

NAMESPACES = [f"team-{i}" for i in range(100)]
PROJECTS = [f"project-{i}" for i in range(50)]
USERS = [f"user-{i}" for i in range(500)]
MODELS = ["gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2", "auto"]


def generate(ledger: SqliteLedger, rows: int, end: datetime, batch: int = 50_000) -> float:
    rng = random.Random(42)
    start_ms, span = to_ms(end - timedelta(days=60)), 60 * 86_400_000
    started = time.perf_counter()
    for offset in range(0, rows, batch):
        records = [
            LedgerRecord(
                request_id=f"r{offset + i}",
                ts_ms=start_ms + rng.randrange(span),
                namespace=rng.choice(NAMESPACES),
                key_name="default",
                budgets=[],
                project=rng.choice(PROJECTS),
                user_id=rng.choice(USERS),
                requested_model=rng.choice(MODELS),
                routed_model="m",
                prompt_tokens=rng.randrange(10, 4000),
                completion_tokens=rng.randrange(1, 800),
                cost_micros=rng.randrange(1, 20_000),
            )
            for i in range(min(batch, rows - offset))
        ]
        ledger.write(records, [])
    return time.perf_counter() - started


def timed(fn: object, runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="llmbudget-reports-")) / "ledger.sqlite3"
    ledger = SqliteLedger(path)
    end = datetime(2026, 11, 23, tzinfo=UTC)
    seconds = generate(ledger, args.rows, end)
    rollups = ledger.db.execute("SELECT COUNT(*) FROM rollup_hourly", []).fetchone()[0]
    size = path.stat().st_size / 2**30
    print(
        f"{args.rows:,} rows generated in {seconds:.0f} s ({rollups:,} hourly rollup rows, "
        f"{size:.1f} GiB)"
    )
    start = end - timedelta(days=30)
    for label, query in (
        (
            "spend by namespace, 30 days",
            lambda: reports.spend_by(ledger.db, "namespace", start, end, None, 100),
        ),
        (
            "spend by user, 30 days",
            lambda: reports.spend_by(ledger.db, "user", start, end, None, 10),
        ),
        (
            "spend by model in one namespace",
            lambda: reports.spend_by(ledger.db, "model", start, end, "team-7", 10),
        ),
        ("daily trend, 30 days", lambda: reports.daily(ledger.db, start, end, None)),
    ):
        p50, p95 = timed(query, args.runs)
        print(f"{label}: p50 {p50:.0f} ms, p95 {p95:.0f} ms")


if __name__ == "__main__":
    main()
