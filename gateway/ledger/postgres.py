"""The PostgreSQL ledger, for several gateway replicas: same rows and rollups as SQLite, plus
the shared budget windows that make enforcement exact across replicas.

A batch is one transaction: the request rows (a retried batch inserts nothing twice), their
hourly and daily rollups, threshold crossings and, for every row inserted now, the settlement
of its reservation: the reserved amount leaves the budget windows and the real cost and tokens
are added. A row is therefore billed exactly once, in the same commit that records it.

All methods are synchronous and run on the ledger thread (`LedgerWriter` owns it).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import psycopg

from llmbudget_gateway.budgets import Crossing
from llmbudget_gateway.ledger.postgres_schema import migrate
from llmbudget_gateway.ledger.queries import Database, LedgerQueries, Rows
from llmbudget_gateway.ledger.records import COLUMNS, LedgerRecord, WindowKey
from llmbudget_gateway.ledger.rollups import (
    DAY_MS,
    HOUR_MS,
    rollups,
    to_ms,
)

log = logging.getLogger("llmbudget.ledger")
Connection = psycopg.Connection[tuple[Any, ...]]

_TYPES = (
    "text", "bigint", "text", "text", "text",  # request_id, ts_ms, namespace, key, budgets
    "text", "text", "text", "text", "text",  # tags
    "text", "text", "text", "text", "text", "text",  # endpoint .. provider
    "bigint", "bigint", "bigint", "bigint", "bigint", "bigint",  # tokens, cost
    "float8", "float8", "integer", "text",  # latency, ttft, status, error
    "smallint", "smallint", "smallint", "text",  # flags, route_decision
)  # fmt: skip
assert len(_TYPES) == len(COLUMNS)
_INSERT = (
    f"INSERT INTO requests ({', '.join(COLUMNS)}) SELECT * FROM unnest("  # noqa: S608
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + ") ON CONFLICT (request_id) DO NOTHING RETURNING request_id"
)
_HOURLY = """
INSERT INTO rollup_hourly VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (hour_ms, namespace, project, user_id, model, key_name) DO UPDATE SET
    requests = rollup_hourly.requests + excluded.requests,
    prompt_tokens = rollup_hourly.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = rollup_hourly.completion_tokens + excluded.completion_tokens,
    cost_micros = rollup_hourly.cost_micros + excluded.cost_micros,
    max_cost_micros = GREATEST(rollup_hourly.max_cost_micros, excluded.max_cost_micros)
"""
_DAILY = """
INSERT INTO rollup_daily VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (dim, day_ms, namespace, value) DO UPDATE SET
    requests = rollup_daily.requests + excluded.requests,
    tokens = rollup_daily.tokens + excluded.tokens,
    cost_micros = rollup_daily.cost_micros + excluded.cost_micros,
    max_cost_micros = GREATEST(rollup_daily.max_cost_micros, excluded.max_cost_micros)
"""
_SETTLE = """
UPDATE budget_windows SET
    spent_micros = spent_micros + %s, spent_tokens = spent_tokens + %s,
    requests = requests + %s,
    reserved_micros = reserved_micros - %s, reserved_tokens = reserved_tokens - %s
WHERE budget = %s AND period = %s AND window_start_ms = %s
"""


def _row(record: LedgerRecord) -> tuple[Any, ...]:
    values = list(record.row())
    for flag in (-2, -3, -4):  # stream, estimated, unpriced: stored as 0/1 like SQLite
        values[flag] = int(values[flag])
    return tuple(values)


class _Dialect:
    """The connection seen through `?` placeholders, so report SQL serves both stores."""

    def __init__(self, ledger: PostgresLedger) -> None:
        self._ledger = ledger

    def execute(self, sql: str, parameters: Sequence[Any], /) -> Rows:
        query = sql.replace("%", "%%").replace("?", "%s")
        return self._ledger.connection().execute(query.encode(), list(parameters))


def settlements(
    records: Sequence[LedgerRecord], held: dict[str, tuple[int, int]]
) -> list[tuple[Any, ...]]:
    """Parameters of _SETTLE per window, sorted: spend of the rows, minus what they held."""
    sums: dict[WindowKey, list[int]] = {}
    for record in records:
        micros, tokens = held.get(record.request_id, (0, 0))
        billed = 1 if record.total_tokens else 0
        for window in record.windows:
            total = sums.setdefault(window, [0, 0, 0, 0, 0])
            total[0] += record.cost_micros
            total[1] += record.total_tokens
            total[2] += billed
            total[3] += micros
            total[4] += tokens
    return [(*amounts, *window) for window, amounts in sorted(sums.items())]


class PostgresLedger(LedgerQueries):
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._conn = self._connect()
        self.schema_version = migrate(self._conn)

    def _connect(self) -> Connection:
        return psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)

    def connection(self) -> Connection:
        """The connection, reopened if the database dropped it (the writer retries)."""
        if self._conn.closed or self._conn.broken:
            log.warning("ledger database connection lost; reconnecting")
            self._conn = self._connect()
        return self._conn

    @property
    def db(self) -> Database:
        return _Dialect(self)

    def close(self) -> None:
        self._conn.close()

    def write(self, records: Iterable[LedgerRecord], crossings: Iterable[Crossing] = ()) -> None:
        records = list(records)
        conn = self.connection()
        with conn.transaction(), conn.cursor() as cur:
            inserted: set[str] = set()
            if records:
                columns = list(zip(*(_row(r) for r in records), strict=True))
                cur.execute(_INSERT, [list(c) for c in columns])
                inserted = {row[0] for row in cur.fetchall()}
            new = [r for r in records if r.request_id in inserted]
            if new:
                hourly, daily = rollups(new)
                cur.executemany(_HOURLY, hourly)
                cur.executemany(_DAILY, daily)
            rows = [
                (c.budget, c.period.value, to_ms(c.window_start), c.threshold, to_ms(c.crossed_at))
                for c in crossings
            ]
            if rows:
                cur.executemany(
                    "INSERT INTO crossings VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    sorted(rows),
                )
            # Last before the commit: the windows' row locks, which every replica's
            # reservations wait on, are held for as short a time as possible.
            settled = [r for r in new if r.windows]
            if settled:
                cur.execute(
                    "DELETE FROM reservations WHERE request_id = ANY(%s) "
                    "RETURNING request_id, micros, tokens",
                    ([r.request_id for r in settled],),
                )
                held = {row[0]: (int(row[1]), int(row[2])) for row in cur.fetchall()}
                cur.executemany(_SETTLE, settlements(settled, held))

    def prune(self, before: datetime) -> int:
        cutoff = to_ms(before)
        conn = self.connection()
        with conn.transaction():
            deleted = conn.execute("DELETE FROM requests WHERE ts_ms < %s", (cutoff,)).rowcount
            conn.execute("DELETE FROM rollup_hourly WHERE hour_ms + %s <= %s", (HOUR_MS, cutoff))
            conn.execute("DELETE FROM rollup_daily WHERE day_ms + %s <= %s", (DAY_MS, cutoff))
            conn.execute("DELETE FROM crossings WHERE crossed_at_ms < %s", (cutoff,))
            conn.execute(  # windows that ended before the cutoff (the longest is a month)
                "DELETE FROM budget_windows WHERE window_start_ms < %s",
                (cutoff - 31 * DAY_MS,),
            )
        return int(deleted)
