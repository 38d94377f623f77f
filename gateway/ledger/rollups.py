"""Hourly and daily rollups of ledger rows, computed per batch before they are upserted.

Both ledgers (SQLite and PostgreSQL) keep the same rollup tables: reports read them, so a
report is bounded by days x groups, whatever the number of requests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from llmbudget_gateway.ledger.records import LedgerRecord

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
ALL = "*"  # the namespace of rollup rows that sum every namespace
# Report dimension -> ledger column. One daily rollup per dimension keeps every report
# bounded by days x groups, whatever the number of requests or the mix of tags.
DAILY_DIMENSIONS = {
    "namespace": "namespace",
    "project": "project",
    "user": "user_id",
    "model": "requested_model",
    "key": "key_name",
}


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


Rows = list[tuple[Any, ...]]


def rollups(records: list[LedgerRecord]) -> tuple[Rows, Rows]:
    """(hourly rows, daily rows) of a batch, each sorted so that concurrent writers (several
    replicas) lock rollup rows in one order and cannot deadlock.

    Hourly: one row per (hour, namespace, project, user, model, key) with requests, prompt
    and completion tokens, cost and maximum cost. Daily: per dimension (namespace, project,
    user, model, key) and day, per namespace and, but for the namespace dimension, across all
    namespaces under "*" (cluster-wide reports then read days x values, not days x values x
    namespaces). The daily rows are derived from the hourly groups, not from every record:
    one dictionary update per request."""
    hourly: dict[tuple[Any, ...], list[int]] = {}
    for r in records:
        key = (
            r.ts_ms - r.ts_ms % HOUR_MS,
            r.namespace,
            r.project or "",
            r.user_id or "",
            r.requested_model,
            r.key_name,
        )
        sums = hourly.get(key)
        if sums is None:
            hourly[key] = [1, r.prompt_tokens, r.completion_tokens, r.cost_micros, r.cost_micros]
        else:
            sums[0] += 1
            sums[1] += r.prompt_tokens
            sums[2] += r.completion_tokens
            sums[3] += r.cost_micros
            sums[4] = max(sums[4], r.cost_micros)
    daily: dict[tuple[Any, ...], list[int]] = {}
    for (hour, namespace, project, user, model, key_name), sums in hourly.items():
        day = hour - hour % DAY_MS
        requests, tokens, micros, biggest = sums[0], sums[1] + sums[2], sums[3], sums[4]
        values = (
            ("namespace", namespace),
            ("project", project),
            ("user", user),
            ("model", model),
            ("key", key_name),
        )
        for dim, value in values:
            for scope in (namespace,) if dim == "namespace" else (namespace, ALL):
                group = daily.get((dim, day, scope, value))
                if group is None:
                    daily[(dim, day, scope, value)] = [requests, tokens, micros, biggest]
                else:
                    group[0] += requests
                    group[1] += tokens
                    group[2] += micros
                    group[3] = max(group[3], biggest)
    return (
        [(*key, *sums) for key, sums in sorted(hourly.items())],
        [(*key, *sums) for key, sums in sorted(daily.items())],
    )
