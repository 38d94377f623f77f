"""Ledger reads both stores answer with the same SQL (SQLite, or PostgreSQL through a shim).

Queries are written with `?` placeholders; `PostgresLedger.db` rewrites them for psycopg.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from llmbudget_gateway.contract.specs import Period
from llmbudget_gateway.ledger.records import COLUMNS
from llmbudget_gateway.ledger.rollups import from_ms, to_ms

TAG_COLUMNS = {
    "project": "project",
    "user": "user_id",
    "session": "session_id",
    "environment": "environment",
    "costCenter": "cost_center",
}
DIMENSIONS = {
    "model": "requested_model",
    "project": "project",
    "user": "user_id",
    "key": "key_name",
    "namespace": "namespace",
}


class Rows(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Database(Protocol):
    """What report code needs of a connection: `execute(sql with ?, params)` -> rows."""

    def execute(self, sql: str, parameters: Sequence[Any], /) -> Rows: ...


def scope_filter(namespace: str, scope: Mapping[str, str]) -> tuple[str, list[Any]]:
    clauses, params = ["namespace = ?"], [namespace]
    for tag, value in sorted(scope.items()):
        clauses.append(f"{TAG_COLUMNS[tag]} = ?")
        params.append(value)
    return " AND ".join(clauses), params


def as_dict(values: Sequence[Any]) -> dict[str, Any]:
    """A request row as the admin API and exports show it, whichever store it came from."""
    row = dict(zip(COLUMNS, values, strict=True))
    row["budgets"] = json.loads(row["budgets"])
    for flag in ("stream", "estimated", "unpriced"):
        row[flag] = bool(row[flag])
    return row


class LedgerQueries:
    """Reads shared by the stores; subclasses provide `db`. Call on the ledger thread."""

    @property
    def db(self) -> Database:
        raise NotImplementedError

    def window_spend(
        self, namespace: str, scope: Mapping[str, str], start: datetime, end: datetime
    ) -> tuple[int, int, int]:
        """(micro-dollars, tokens, requests) of matching rows with start <= ts < end."""
        where, params = scope_filter(namespace, scope)
        row = self.db.execute(
            f"SELECT COALESCE(SUM(cost_micros), 0), "  # noqa: S608 - columns from a fixed map
            f"COALESCE(SUM(prompt_tokens + completion_tokens), 0), COUNT(*) "
            f"FROM requests WHERE {where} AND ts_ms >= ? AND ts_ms < ?",
            [*params, to_ms(start), to_ms(end)],
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def breakdown(
        self,
        namespace: str,
        scope: Mapping[str, str],
        start: datetime,
        end: datetime,
        dimension: str,
        top: int = 10,
    ) -> list[dict[str, Any]]:
        column = DIMENSIONS[dimension]
        where, params = scope_filter(namespace, scope)
        rows = self.db.execute(
            f"SELECT {column}, SUM(cost_micros), SUM(prompt_tokens + completion_tokens), "  # noqa: S608
            f"COUNT(*) FROM requests WHERE {where} AND ts_ms >= ? AND ts_ms < ? "
            f"AND {column} IS NOT NULL GROUP BY {column} ORDER BY 2 DESC, 3 DESC LIMIT ?",
            [*params, to_ms(start), to_ms(end), top],
        ).fetchall()
        return [
            {"name": r[0], "micros": int(r[1]), "tokens": int(r[2]), "requests": int(r[3])}
            for r in rows
        ]

    def crossings(self, since: datetime) -> list[tuple[str, Period, datetime, int, datetime]]:
        rows = self.db.execute(
            "SELECT budget, period, window_start_ms, threshold, crossed_at_ms FROM crossings "
            "WHERE window_start_ms >= ? ORDER BY crossed_at_ms",
            [to_ms(since)],
        ).fetchall()
        return [(r[0], Period(r[1]), from_ms(r[2]), int(r[3]), from_ms(r[4])) for r in rows]

    def recent(self, namespace: str | None, limit: int) -> list[dict[str, Any]]:
        where, params = ("WHERE namespace = ?", [namespace]) if namespace else ("", [])
        rows = self.db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM requests {where} "  # noqa: S608
            "ORDER BY ts_ms DESC LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [as_dict(values) for values in rows]

    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM requests", []).fetchone()[0])

    def total_cost_micros(self) -> int:
        row = self.db.execute("SELECT COALESCE(SUM(cost_micros), 0) FROM requests", []).fetchone()
        return int(row[0])
