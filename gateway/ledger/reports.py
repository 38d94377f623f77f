"""Spend reports and exports from the ledger (SQLite), for finance and team leads.

Reports read the hourly rollups, so a 30-day report touches at most 720 rows per group, not
every request; exports read the request rows themselves, in pages.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from llmbudget_gateway.ledger.records import COLUMNS

GROUPS = {
    "namespace": "namespace",
    "project": "project",
    "user": "user_id",
    "model": "model",
    "key": "key_name",
}


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _window(
    column: str, start: datetime, end: datetime, namespace: str | None
) -> tuple[str, list[Any]]:
    """WHERE clause and parameters for rows with start <= column < end (and the namespace)."""
    where = f"{column} >= ? AND {column} < ?"
    params: list[Any] = [_ms(start), _ms(end)]
    if namespace:
        where += " AND namespace = ?"
        params.append(namespace)
    return where, params


def spend_by(
    db: sqlite3.Connection,
    group: str,
    start: datetime,
    end: datetime,
    namespace: str | None,
    top: int,
) -> list[dict[str, Any]]:
    column = GROUPS[group]
    where, params = _window("hour_ms", start, end, namespace)
    rows = db.execute(
        f"SELECT {column}, SUM(requests), SUM(prompt_tokens + completion_tokens), "  # noqa: S608
        f"SUM(cost_micros), MAX(max_cost_micros) FROM rollup_hourly WHERE {where} "
        f"GROUP BY {column} ORDER BY 4 DESC, 2 DESC LIMIT ?",
        [*params, top],
    ).fetchall()
    return [
        {
            "name": r[0],
            "requests": int(r[1]),
            "tokens": int(r[2]),
            "micros": int(r[3]),
            "maxMicros": int(r[4]),
        }
        for r in rows
    ]


def daily(
    db: sqlite3.Connection, start: datetime, end: datetime, namespace: str | None
) -> list[dict[str, Any]]:
    where, params = _window("hour_ms", start, end, namespace)
    rows = db.execute(
        "SELECT hour_ms / 86400000, SUM(requests), SUM(prompt_tokens + completion_tokens), "  # noqa: S608
        f"SUM(cost_micros) FROM rollup_hourly WHERE {where} GROUP BY 1 ORDER BY 1",
        params,
    ).fetchall()
    return [
        {
            "date": datetime.fromtimestamp(r[0] * 86400, UTC).date().isoformat(),
            "requests": int(r[1]),
            "tokens": int(r[2]),
            "micros": int(r[3]),
        }
        for r in rows
    ]


def export_rows(
    db: sqlite3.Connection, start: datetime, end: datetime, namespace: str | None, page: int = 5000
) -> Iterator[dict[str, Any]]:
    where, params = _window("ts_ms", start, end, namespace)
    last: tuple[str, int] = ("", -1)  # (request_id, ts_ms) of the last row sent
    while True:
        rows = db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM requests WHERE {where} "  # noqa: S608
            "AND (ts_ms, request_id) > (?, ?) ORDER BY ts_ms, request_id LIMIT ?",
            [*params, last[1], last[0], page],
        ).fetchall()
        for values in rows:
            row = dict(zip(COLUMNS, values, strict=True))
            row["budgets"] = json.loads(row["budgets"])
            yield row
        if len(rows) < page:
            return
        last = (rows[-1][0], rows[-1][1])
