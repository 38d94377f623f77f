"""The SQLite ledger (the embedded default): WAL mode, one row per request, hourly rollups.

All methods are synchronous and must be called from one thread (`LedgerWriter` owns it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from llmbudget_gateway.budgets import Crossing
from llmbudget_gateway.ledger.queries import Database, LedgerQueries
from llmbudget_gateway.ledger.records import COLUMNS, LedgerRecord
from llmbudget_gateway.ledger.rollups import (
    ALL,
    DAILY_DIMENSIONS,
    DAY_MS,
    HOUR_MS,
    rollups,
    to_ms,
)

SCHEMA_VERSION = 1
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    key_name TEXT NOT NULL,
    budgets TEXT NOT NULL,
    project TEXT, user_id TEXT, session_id TEXT, environment TEXT, cost_center TEXT,
    endpoint TEXT NOT NULL,
    requested_model TEXT NOT NULL, routed_model TEXT NOT NULL, route TEXT NOT NULL,
    backend TEXT NOT NULL, provider TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, cached_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_micros INTEGER NOT NULL,
    latency_ms REAL NOT NULL, ttft_ms REAL,
    status INTEGER NOT NULL, error_code TEXT,
    stream INTEGER NOT NULL, estimated INTEGER NOT NULL, unpriced INTEGER NOT NULL,
    route_decision TEXT
);
CREATE INDEX IF NOT EXISTS requests_namespace_ts ON requests (namespace, ts_ms);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts_ms);
CREATE TABLE IF NOT EXISTS crossings (
    budget TEXT NOT NULL, period TEXT NOT NULL, window_start_ms INTEGER NOT NULL,
    threshold INTEGER NOT NULL, crossed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (budget, period, window_start_ms, threshold)
);
CREATE TABLE IF NOT EXISTS rollup_hourly (
    hour_ms INTEGER NOT NULL, namespace TEXT NOT NULL, project TEXT NOT NULL,
    user_id TEXT NOT NULL, model TEXT NOT NULL, key_name TEXT NOT NULL,
    requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
    max_cost_micros INTEGER NOT NULL,
    PRIMARY KEY (hour_ms, namespace, project, user_id, model, key_name)
);
CREATE TABLE IF NOT EXISTS rollup_daily (
    dim TEXT NOT NULL, day_ms INTEGER NOT NULL, namespace TEXT NOT NULL, value TEXT NOT NULL,
    requests INTEGER NOT NULL, tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
    max_cost_micros INTEGER NOT NULL,
    PRIMARY KEY (dim, day_ms, namespace, value)
) WITHOUT ROWID;
PRAGMA user_version = {SCHEMA_VERSION};
"""
_PLACEHOLDERS = ", ".join("?" for _ in COLUMNS)
_INSERT = "INSERT OR IGNORE INTO requests (" + ", ".join(COLUMNS) + f") VALUES ({_PLACEHOLDERS})"  # noqa: S608
_ROLLUP = """
INSERT INTO rollup_hourly VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ms, namespace, project, user_id, model, key_name) DO UPDATE SET
    requests = requests + excluded.requests,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cost_micros = cost_micros + excluded.cost_micros,
    max_cost_micros = MAX(max_cost_micros, excluded.max_cost_micros)
"""
_DAILY = """
INSERT INTO rollup_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (dim, day_ms, namespace, value) DO UPDATE SET
    requests = requests + excluded.requests,
    tokens = tokens + excluded.tokens,
    cost_micros = cost_micros + excluded.cost_micros,
    max_cost_micros = MAX(max_cost_micros, excluded.max_cost_micros)
"""


class SqliteLedger(LedgerQueries):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA busy_timeout = 5000")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise RuntimeError(
                f"ledger {path} has schema version {version}; this gateway knows {SCHEMA_VERSION}"
            )
        self._db.executescript(SCHEMA)

    @property
    def db(self) -> Database:
        """The connection, for report queries (call them on the ledger thread)."""
        return self._db

    def close(self) -> None:
        self._db.close()

    def write(self, records: Iterable[LedgerRecord], crossings: Iterable[Crossing] = ()) -> None:
        """One transaction: the rows, their hourly rollups and threshold crossings."""
        records = list(records)
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(_INSERT, [r.row() for r in records])
            inserted = self._db.total_changes - before
            if inserted == len(records):  # no duplicates: roll every row up
                hourly, daily = rollups(records)
                self._db.executemany(_ROLLUP, hourly)
                self._db.executemany(_DAILY, daily)
            else:  # a retried batch: roll up only rows not seen before (rebuild the hours)
                self._rebuild_rollups({r.ts_ms - r.ts_ms % HOUR_MS for r in records})
                self._rebuild_daily({r.ts_ms - r.ts_ms % DAY_MS for r in records})
            self._db.executemany(
                "INSERT OR IGNORE INTO crossings VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        c.budget,
                        c.period.value,
                        to_ms(c.window_start),
                        c.threshold,
                        to_ms(c.crossed_at),
                    )
                    for c in crossings
                ],
            )

    def _rebuild_daily(self, days: set[int]) -> None:
        for day in days:
            self._db.execute("DELETE FROM rollup_daily WHERE day_ms = ?", (day,))
            for dim, column in DAILY_DIMENSIONS.items():
                scopes = ["namespace"] if dim == "namespace" else ["namespace", f"'{ALL}'"]
                for scope in scopes:
                    group = "" if scope.startswith("'") else "namespace, "
                    self._db.execute(
                        f"""INSERT INTO rollup_daily
                        SELECT ?, ?, {scope}, COALESCE({column}, ''), COUNT(*),
                               SUM(prompt_tokens + completion_tokens), SUM(cost_micros),
                               MAX(cost_micros)
                        FROM requests WHERE ts_ms >= ? AND ts_ms < ?
                        GROUP BY {group}COALESCE({column}, '')""",  # noqa: S608 - fixed columns
                        (dim, day, day, day + DAY_MS),
                    )

    def _rebuild_rollups(self, hours: set[int]) -> None:
        for hour in hours:
            self._db.execute("DELETE FROM rollup_hourly WHERE hour_ms = ?", (hour,))
            self._db.execute(
                """INSERT INTO rollup_hourly
                SELECT ?, namespace, COALESCE(project, ''), COALESCE(user_id, ''),
                       requested_model, key_name, COUNT(*), SUM(prompt_tokens),
                       SUM(completion_tokens), SUM(cost_micros), MAX(cost_micros)
                FROM requests WHERE ts_ms >= ? AND ts_ms < ?
                GROUP BY namespace, project, user_id, requested_model, key_name""",
                (hour, hour, hour + HOUR_MS),
            )

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def prune(self, before: datetime) -> int:
        """Delete rows (and rollups) older than `before`; returns the number of rows deleted."""
        cutoff = to_ms(before)
        with self._transaction():
            deleted = self._db.execute("DELETE FROM requests WHERE ts_ms < ?", (cutoff,)).rowcount
            self._db.execute("DELETE FROM rollup_hourly WHERE hour_ms + ? <= ?", (HOUR_MS, cutoff))
            self._db.execute("DELETE FROM rollup_daily WHERE day_ms + ? <= ?", (DAY_MS, cutoff))
            self._db.execute("DELETE FROM crossings WHERE crossed_at_ms < ?", (cutoff,))
        return int(deleted)
