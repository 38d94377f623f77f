"""The PostgreSQL ledger on a real server: migrations, rows, rollups, settlement, reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from llmbudget_gateway.budgets import Crossing
from llmbudget_gateway.contract.specs import Period
from llmbudget_gateway.ledger import reports
from llmbudget_gateway.ledger.postgres import PostgresLedger
from llmbudget_gateway.ledger.postgres_schema import MIGRATIONS, migrate
from llmbudget_gateway.ledger.records import LedgerRecord
from llmbudget_gateway.ledger.rollups import to_ms
from llmbudget_gateway.ledger.sqlite import SqliteLedger

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
WINDOW = ("team-a/monthly", "Monthly", to_ms(datetime(2026, 11, 1, tzinfo=UTC)))


def record(i: int, cost: int = 100, **fields: object) -> LedgerRecord:
    base: dict[str, object] = {
        "request_id": f"r{i}",
        "ts_ms": to_ms(NOW) + i,
        "namespace": "team-a",
        "key_name": "k",
        "budgets": ["team-a/monthly"],
        "project": "p1" if i % 2 else "p2",
        "requested_model": "gpt-4.1",
        "prompt_tokens": 7,
        "completion_tokens": 12,
        "cost_micros": cost,
        "stream": bool(i % 2),
    }
    base.update(fields)
    return LedgerRecord(**base)  # type: ignore[arg-type]


def reserve(conn: psycopg.Connection[tuple[Any, ...]], rid: str, micros: int, limit: int) -> int:
    row = conn.execute(
        "SELECT llmbudget_reserve(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (rid, [WINDOW[0]], [WINDOW[1]], [WINDOW[2]], [limit], [None], micros, 50, 10**15),
    ).fetchone()
    assert row is not None
    return int(row[0])


def window(conn: psycopg.Connection[tuple[Any, ...]]) -> tuple[int, ...]:
    row = conn.execute(
        "SELECT spent_micros, spent_tokens, reserved_micros, reserved_tokens, requests "
        "FROM budget_windows WHERE budget = %s AND period = %s AND window_start_ms = %s",
        WINDOW,
    ).fetchone()
    assert row is not None
    return tuple(int(v) for v in row)


def test_migrations_run_once_and_refuse_a_newer_schema(pg_dsn: str) -> None:
    PostgresLedger(pg_dsn).close()
    ledger = PostgresLedger(pg_dsn)  # a second replica: nothing applied twice
    assert ledger.schema_version == len(MIGRATIONS)
    ledger.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT COUNT(*) FROM llmbudget_schema").fetchone() == (1,)
        conn.execute("INSERT INTO llmbudget_schema (version) VALUES (99)")
        with pytest.raises(RuntimeError, match="schema version 99"):
            migrate(conn)


def test_rows_rollups_and_reports_match_sqlite(pg_dsn: str, tmp_path: object) -> None:
    from pathlib import Path

    pg = PostgresLedger(pg_dsn)
    lite = SqliteLedger(Path(str(tmp_path)) / "l.sqlite3")
    batch = [record(i, cost=100 + i) for i in range(50)]
    crossing = Crossing(
        "team-a/monthly", Period.MONTHLY, datetime(2026, 11, 1, tzinfo=UTC), 50, NOW
    )
    for store in (pg, lite):
        store.write(batch[:30], [crossing])
        store.write(batch[20:], [crossing])  # overlapping retry: no row counted twice
    start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
    assert pg.count() == lite.count() == 50
    assert pg.total_cost_micros() == lite.total_cost_micros() == sum(100 + i for i in range(50))
    assert pg.window_spend("team-a", {"project": "p1"}, start, end) == lite.window_spend(
        "team-a", {"project": "p1"}, start, end
    )
    assert pg.crossings(NOW - timedelta(days=40)) == lite.crossings(NOW - timedelta(days=40))
    for group in ("namespace", "project", "model", "key"):
        assert reports.spend_by(pg.db, group, start, end, None, 10) == reports.spend_by(
            lite.db, group, start, end, None, 10
        )
    assert reports.daily(pg.db, start, end, "team-a") == reports.daily(
        lite.db, start, end, "team-a"
    )
    assert list(reports.export_rows(pg.db, start, end, None, page=7)) == list(
        reports.export_rows(lite.db, start, end, None, page=7)
    )
    assert pg.recent("team-a", 3) == lite.recent("team-a", 3)
    assert pg.prune(NOW + timedelta(days=2)) == 50
    assert pg.count() == 0
    pg.close()


def test_writing_a_row_settles_its_reservation_exactly_once(pg_dsn: str) -> None:
    ledger = PostgresLedger(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert reserve(conn, "r1", 400, limit=1000) == 0
        assert reserve(conn, "r2", 400, limit=1000) == 0
        assert reserve(conn, "r3", 400, limit=1000) == 1  # 800 reserved + 400 > 1000
        assert window(conn) == (0, 0, 800, 100, 0)
        first = record(1, cost=123, windows=(WINDOW,))
        released = record(2, cost=0, prompt_tokens=0, completion_tokens=0, windows=(WINDOW,))
        ledger.write([first, released])
        assert window(conn) == (123, 19, 0, 0, 1)
        ledger.write([first, released])  # the writer retried a batch: billed once
        assert window(conn) == (123, 19, 0, 0, 1)
        assert reserve(conn, "r3", 800, limit=1000) == 0  # 123 spent + 800 <= 1000
        assert reserve(conn, "r4", 78, limit=1000) == 1  # 123 + 800 + 78 > 1000
    ledger.close()


def test_expired_reservations_are_given_back(pg_dsn: str) -> None:
    PostgresLedger(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT llmbudget_reserve(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            ("dead", [WINDOW[0]], [WINDOW[1]], [WINDOW[2]], [1000], [None], 700, 9, 5),
        ).fetchone()
        assert row == (0,)
        assert window(conn)[2] == 700
        assert conn.execute("SELECT llmbudget_expire(%s)", (4,)).fetchone() == (0,)
        assert conn.execute("SELECT llmbudget_expire(%s)", (6,)).fetchone() == (1,)
        assert window(conn) == (0, 0, 0, 0, 0)
