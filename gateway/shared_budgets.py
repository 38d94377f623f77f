"""Budget enforcement shared by several gateway replicas, through the PostgreSQL ledger.

Each replica decides locally first (`BudgetBook.reserve`: breakers, downgrades, and a fast
refusal when its view of the spend already says no). A request the replica admits is then
reserved in the database (`llmbudget_reserve`): one statement that checks and reserves every
window of every matching Block limit atomically, with rows locked in a fixed order, so N
requests from any number of replicas against room for k admit at most k. Writing the request's
ledger row settles the reservation in the same transaction (`PostgresLedger.write`).

A replica that dies holding reservations leaves them in the database; they expire after
`lease` seconds (`llmbudget_expire`, run by every replica), so a crash costs headroom for a
while, never money. Each replica refreshes its view of every window's spend every
`sync_interval` seconds, which is what its admin API (and so the CR status) reports.

If the database cannot be reached, `fail_open` decides: refuse with a 503 (default), or admit
on the replica's local view alone and settle the spend when the database is back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg_pool import AsyncConnectionPool

from llmbudget_gateway.budgets import BudgetBook, BudgetState, LimitState, Reservation
from llmbudget_gateway.contract.specs import Action, Period
from llmbudget_gateway.ledger.records import WindowKey
from llmbudget_gateway.ledger.rollups import from_ms, to_ms

log = logging.getLogger("llmbudget.shared")
_RESERVE = "SELECT llmbudget_reserve(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
_READ = """
SELECT b.budget, b.period, b.window_start_ms, b.spent_micros, b.spent_tokens, b.requests
FROM budget_windows b JOIN unnest(%s::text[], %s::text[], %s::bigint[]) AS u(budget, period, start)
  ON b.budget = u.budget AND b.period = u.period AND b.window_start_ms = u.start
"""


class SharedLedgerUnavailable(Exception):
    """The database did not answer; the caller applies the fail-open/closed setting."""


def window_key(state: BudgetState, limit: LimitState) -> WindowKey:
    return (state.budget.key, limit.limit.period.value, to_ms(limit.window.start))


def _columns(keys: list[WindowKey]) -> tuple[list[str], list[str], list[int]]:
    """Window keys as the three arrays the SQL unnests: budgets, periods, starts."""
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


def windows_of(reservation: Reservation) -> tuple[WindowKey, ...]:
    return tuple(sorted(window_key(state, limit) for state, limit in reservation.charges))


@dataclass(frozen=True)
class SpendRow:
    budget: str
    period: Period
    window_start: datetime
    micros: int
    tokens: int
    requests: int


class SharedBudgets:
    def __init__(
        self,
        dsn: str,
        lease_seconds: float = 900.0,
        fail_open: bool = False,
        pool_size: int = 16,
    ) -> None:
        self.lease_ms = int(lease_seconds * 1000)
        self.fail_open = fail_open
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=2,
            max_size=pool_size,
            open=False,
            timeout=3.0,
            kwargs={"autocommit": True, "connect_timeout": 3},
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    async def reserve(
        self, request_id: str, reservation: Reservation, now: datetime
    ) -> tuple[BudgetState, LimitState] | None:
        """Reserve in the database; returns the (budget, limit) that refused, or None."""
        charges = sorted(reservation.charges, key=lambda c: window_key(*c))
        blocking = [(state.budget.action is Action.BLOCK, limit) for state, limit in charges]
        params = (
            request_id,
            *_columns([window_key(state, limit) for state, limit in charges]),
            [limit.amount_micros if block else None for block, limit in blocking],
            [limit.limit.tokens if block else None for block, limit in blocking],
            reservation.micros,
            reservation.tokens,
            to_ms(now) + self.lease_ms,
        )
        try:
            async with self.pool.connection() as conn:
                row = await (await conn.execute(_RESERVE, params)).fetchone()
        except psycopg.Error as error:  # PoolTimeout is an OperationalError
            raise SharedLedgerUnavailable(type(error).__name__) from error
        refused = int(row[0]) if row else 0
        return charges[refused - 1] if refused else None

    async def read(self, book: BudgetBook, now: datetime) -> list[SpendRow]:
        """Every current window's settled spend, as the database has it."""
        keys = [
            window_key(state, state.limit_state(period, now))
            for state in book.states()
            for period in state.limits
        ]
        if not keys:
            return []
        async with self.pool.connection() as conn:
            cursor = await conn.execute(_READ, _columns(keys))
            rows = await cursor.fetchall()
        return [
            SpendRow(r[0], Period(r[1]), from_ms(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

    async def sync(self, book: BudgetBook, now: datetime) -> None:
        """Set the local view of every current window to the database's."""
        for row in await self.read(book, now):
            book.restore(row.budget, row.period, row.window_start, row.micros, row.tokens,
                         row.requests)  # fmt: skip

    async def seed(self, rows: list[SpendRow]) -> None:
        """Create windows with the spend the ledger rows already hold (a budget added
        mid-period); windows that exist are left alone."""
        if not rows:
            return
        async with self.pool.connection() as conn:
            await conn.execute(
                "INSERT INTO budget_windows "
                "(budget, period, window_start_ms, spent_micros, spent_tokens, requests) "
                "SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], "
                "%s::bigint[], %s::bigint[]) ON CONFLICT DO NOTHING",
                (
                    [r.budget for r in rows],
                    [r.period.value for r in rows],
                    [to_ms(r.window_start) for r in rows],
                    [r.micros for r in rows],
                    [r.tokens for r in rows],
                    [r.requests for r in rows],
                ),
            )

    async def expire(self, now: datetime) -> int:
        """Give back reservations past their lease (their replica died); returns how many."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute("SELECT llmbudget_expire(%s)", (to_ms(now),))
            ).fetchone()
        return int(row[0]) if row else 0
