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


def daily_rollups(records: list[LedgerRecord]) -> list[tuple[Any, ...]]:
    """(dim, day_ms, namespace, value, requests, tokens, micros, max micros), sorted."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for r in records:
        day = r.ts_ms - r.ts_ms % DAY_MS
        tokens = r.prompt_tokens + r.completion_tokens
        values = (
            ("namespace", r.namespace),
            ("project", r.project),
            ("user", r.user_id),
            ("model", r.requested_model),
            ("key", r.key_name),
        )
        for dim, value in values:
            # Per namespace and, but for the namespace dimension, across all namespaces under
            # "*": cluster-wide reports then read days x values, not days x values x namespaces.
            for scope in (r.namespace,) if dim == "namespace" else (r.namespace, ALL):
                key = (dim, day, scope, value or "")
                sums = groups.get(key)
                if sums is None:
                    groups[key] = [1, tokens, r.cost_micros, r.cost_micros]
                else:
                    sums[0] += 1
                    sums[1] += tokens
                    sums[2] += r.cost_micros
                    sums[3] = max(sums[3], r.cost_micros)
    # Sorted: concurrent writers (several replicas) lock rollup rows in one order, no deadlock.
    return [(*key, *sums) for key, sums in sorted(groups.items())]


def hourly_rollups(records: list[LedgerRecord]) -> list[tuple[Any, ...]]:
    """One upsert per (hour, namespace, project, user, model, key) of the batch, sorted."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for r in records:
        key = (
            r.ts_ms - r.ts_ms % HOUR_MS,
            r.namespace,
            r.project or "",
            r.user_id or "",
            r.requested_model,
            r.key_name,
        )
        sums = groups.get(key)
        if sums is None:
            groups[key] = [1, r.prompt_tokens, r.completion_tokens, r.cost_micros, r.cost_micros]
        else:
            sums[0] += 1
            sums[1] += r.prompt_tokens
            sums[2] += r.completion_tokens
            sums[3] += r.cost_micros
            sums[4] = max(sums[4], r.cost_micros)
    return [(*key, *sums) for key, sums in sorted(groups.items())]
