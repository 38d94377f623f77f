"""Spend reports and exports from the ledger (SQLite or PostgreSQL), for finance and team leads.

Reports read the daily rollups (one per dimension), so a 30-day report touches at most
30 x groups rows, whatever the number of requests; exports read the request rows, in pages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

from llmbudget_gateway.ledger.queries import Database
from llmbudget_gateway.ledger.records import COLUMNS
from llmbudget_gateway.ledger.rollups import ALL

GROUPS = ("namespace", "project", "user", "model", "key")


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


def day_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """Reports count whole UTC days: `start` is rounded down, `end` up, to midnight."""
    first = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return first, last if last == end else last + timedelta(days=1)


def spend_by(
    db: Database,
    group: str,
    start: datetime,
    end: datetime,
    namespace: str | None,
    top: int,
) -> list[dict[str, Any]]:
    scope = namespace or (None if group == "namespace" else ALL)
    where, params = _window("day_ms", *day_range(start, end), scope)
    rows = db.execute(
        "SELECT value, SUM(requests), SUM(tokens), SUM(cost_micros), MAX(max_cost_micros) "  # noqa: S608
        f"FROM rollup_daily WHERE dim = ? AND {where} GROUP BY value "
        "ORDER BY 4 DESC, 2 DESC LIMIT ?",
        [group, *params, top],
    ).fetchall()
    return [
        {
            "name": r[0] or None,
            "requests": int(r[1]),
            "tokens": int(r[2]),
            "micros": int(r[3]),
            "maxMicros": int(r[4]),
        }
        for r in rows
    ]


def daily(
    db: Database, start: datetime, end: datetime, namespace: str | None
) -> list[dict[str, Any]]:
    where, params = _window("day_ms", *day_range(start, end), namespace)
    rows = db.execute(
        "SELECT day_ms, SUM(requests), SUM(tokens), SUM(cost_micros) FROM rollup_daily "  # noqa: S608
        f"WHERE dim = 'namespace' AND {where} GROUP BY day_ms ORDER BY day_ms",
        params,
    ).fetchall()
    return [
        {
            "date": datetime.fromtimestamp(r[0] / 1000, UTC).date().isoformat(),
            "requests": int(r[1]),
            "tokens": int(r[2]),
            "micros": int(r[3]),
        }
        for r in rows
    ]


Cursor = tuple[int, str]  # (ts_ms, request_id) of the last row of a page


def export_page(
    db: Database,
    start: datetime,
    end: datetime,
    namespace: str | None,
    after: Cursor = (-1, ""),
    page: int = 5000,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """One page of request rows in time order, and the cursor of the next (None: the last)."""
    where, params = _window("ts_ms", start, end, namespace)
    rows = db.execute(
        f"SELECT {', '.join(COLUMNS)} FROM requests WHERE {where} "  # noqa: S608
        "AND (ts_ms, request_id) > (?, ?) ORDER BY ts_ms, request_id LIMIT ?",
        [*params, after[0], after[1], page],
    ).fetchall()
    result = []
    for values in rows:
        row = dict(zip(COLUMNS, values, strict=True))
        row["budgets"] = json.loads(row["budgets"])
        result.append(row)
    following = (rows[-1][1], rows[-1][0]) if len(rows) == page else None
    return result, following


def export_rows(
    db: Database, start: datetime, end: datetime, namespace: str | None, page: int = 5000
) -> Iterator[dict[str, Any]]:
    """Every row of export_page, page after page (on the calling thread)."""
    cursor: Cursor | None = (-1, "")
    while cursor is not None:
        rows, cursor = export_page(db, start, end, namespace, cursor, page)
        yield from rows


# TokenBudget scope tag -> daily rollup dimension that holds exactly that scope's spend
SCOPE_DIMENSIONS = {"project": "project", "user": "user"}


def scope_daily(
    db: Database, namespace: str, scope: dict[str, str], start: datetime, end: datetime
) -> list[tuple[date, int]] | None:
    """Daily spend of a budget's scope from the rollups, or None when no rollup holds it
    (a scope on several tags, or on session/environment/cost center)."""
    if not scope:
        dim, value = "namespace", namespace
    elif len(scope) == 1 and (tag := next(iter(scope))) in SCOPE_DIMENSIONS:
        dim, value = SCOPE_DIMENSIONS[tag], scope[tag]
    else:
        return None
    rows = db.execute(
        "SELECT day_ms, cost_micros FROM rollup_daily WHERE dim = ? AND namespace = ? "
        "AND value = ? AND day_ms >= ? AND day_ms < ? ORDER BY day_ms",
        [dim, namespace, value, _ms(start), _ms(end)],
    ).fetchall()
    return [(datetime.fromtimestamp(r[0] / 1000, UTC).date(), int(r[1])) for r in rows]


def daily_by_scope(
    db: Database, start: datetime, end: datetime, namespace: str | None
) -> dict[tuple[str, str | None], dict[date, int]]:
    """Spend per day per namespace and per namespace/project, from the daily rollups."""
    where, params = _window("day_ms", *day_range(start, end), namespace)
    rows = db.execute(
        "SELECT dim, namespace, value, day_ms, cost_micros FROM rollup_daily "  # noqa: S608
        f"WHERE dim IN ('namespace', 'project') AND namespace <> '{ALL}' AND {where}",
        params,
    ).fetchall()
    result: dict[tuple[str, str | None], dict[date, int]] = {}
    for dim, scope_ns, value, day_ms, micros in rows:
        if dim == "project" and not value:
            continue  # requests without a project: the namespace row counts them
        scope = (scope_ns, value if dim == "project" else None)
        day = datetime.fromtimestamp(day_ms / 1000, UTC).date()
        result.setdefault(scope, {})[day] = int(micros)
    return result
