"""Budget decisions and settlement: reservation arithmetic, exactly-once, crossings, resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from llmbudget_gateway.budgets import BudgetBook, Denial, Reservation
from llmbudget_gateway.contract.config import Breaker, Budget, Limit
from llmbudget_gateway.contract.specs import Action, Period

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def book(*budgets: Budget) -> BudgetBook:
    b = BudgetBook()
    b.apply(budgets, T0)
    return b


def budget(name: str = "b", ns: str = "team", **extra: Any) -> Budget:
    extra.setdefault("limits", [Limit(period=Period.DAILY, amount_usd=Decimal("0.001"))])
    return Budget(namespace=ns, name=name, **extra)


def reserve(
    b: BudgetBook,
    micros: int,
    tokens: int = 10,
    tags: dict[str, str] | None = None,
    at: datetime = T0,
) -> Reservation | Denial:
    return b.reserve("team", tags or {}, micros, tokens, at)


def test_n_reservations_against_room_for_k_admit_exactly_k() -> None:
    b = book(budget())  # 1000 micro-dollars
    results = [reserve(b, 300) for _ in range(10)]
    admitted = [r for r in results if isinstance(r, Reservation)]
    assert len(admitted) == 3  # 3 * 300 <= 1000 < 4 * 300
    denial = results[3]
    assert isinstance(denial, Denial) and denial.code == "budget_exceeded"
    assert "TokenBudget team/b would exceed its Daily limit" in denial.message
    assert denial.retry_after_seconds == 12 * 3600 + 1


def test_settlement_replaces_the_reservation_exactly_once() -> None:
    b = book(budget())
    r = reserve(b, 600)
    assert isinstance(r, Reservation)
    r.settle(100, 5, T0)
    r.settle(100, 5, T0)  # a retry of the settlement does nothing
    r.release()  # nor does a release after settlement
    limit = b.states()[0].limits[Period.DAILY]
    assert (limit.spent_micros, limit.reserved_micros, limit.spent_tokens) == (100, 0, 5)
    assert isinstance(reserve(b, 900), Reservation)  # 100 + 900 fits


def test_release_gives_the_room_back() -> None:
    b = book(budget())
    r = reserve(b, 1000)
    assert isinstance(r, Reservation) and isinstance(reserve(b, 1), Denial)
    r.release()
    assert isinstance(reserve(b, 1000), Reservation)


def test_token_limits_are_enforced_like_dollars() -> None:
    b = book(budget(limits=[Limit(period=Period.HOURLY, tokens=100)]))
    assert isinstance(reserve(b, 0, tokens=60), Reservation)
    assert isinstance(reserve(b, 0, tokens=41), Denial)


def test_every_limit_must_fit() -> None:
    limits = [
        Limit(period=Period.MONTHLY, amount_usd=Decimal("1")),
        Limit(period=Period.HOURLY, amount_usd=Decimal("0.0005")),
    ]
    b = book(budget(limits=limits))
    denial = reserve(b, 600)
    assert isinstance(denial, Denial) and "Hourly limit" in denial.message


def test_alert_only_admits_and_downgrade_signals() -> None:
    b = book(budget(action=Action.ALERT_ONLY))
    r = reserve(b, 5000)
    assert isinstance(r, Reservation) and r.downgrade_to is None
    b = book(budget(action=Action.DOWNGRADE, downgrade_to="cheap", downgrade_at_percent=50))
    first = reserve(b, 600)
    assert isinstance(first, Reservation) and first.downgrade_to is None
    first.settle(600, 10, T0)
    second = reserve(b, 600)
    assert isinstance(second, Reservation) and second.downgrade_to == "cheap"


def test_thresholds_cross_once_per_window() -> None:
    b = book(budget())
    r = reserve(b, 500)
    assert isinstance(r, Reservation)
    crossings = r.settle(760, 10, T0)
    assert [c.threshold for c in crossings] == [50, 75]
    r2 = reserve(b, 100)
    assert isinstance(r2, Reservation)
    assert [c.threshold for c in r2.settle(10, 1, T0)] == []
    tomorrow = T0 + timedelta(days=1)
    r3 = reserve(b, 600, at=tomorrow)
    assert isinstance(r3, Reservation)
    assert [c.threshold for c in r3.settle(600, 1, tomorrow)] == [50]  # re-armed


def test_windows_reset_at_the_boundary() -> None:
    b = book(budget())
    r = reserve(b, 1000)
    assert isinstance(r, Reservation)
    r.settle(1000, 10, T0)
    midnight = datetime(2026, 11, 24, tzinfo=UTC)
    assert isinstance(reserve(b, 1, at=midnight - timedelta(microseconds=1)), Denial)
    assert isinstance(reserve(b, 1000, at=midnight), Reservation)


def test_scope_tags_narrow_the_budget() -> None:
    scoped = budget("apollo", scope={"project": "apollo"})
    b = book(scoped, budget("all", limits=[Limit(period=Period.DAILY, amount_usd=Decimal(1))]))
    r = reserve(b, 10, tags={"project": "apollo"})
    assert isinstance(r, Reservation) and sorted(r.budgets) == ["team/all", "team/apollo"]
    r = reserve(b, 10, tags={"project": "zeus"})
    assert isinstance(r, Reservation) and r.budgets == ["team/all"]


def test_breaker_refusal_names_the_budget() -> None:
    b = book(
        budget(
            limits=[Limit(period=Period.DAILY, tokens=10**9)],
            breaker=Breaker(tokens_per_hour=100, cooldown_seconds=60, half_open_probes=1),
        )
    )
    r = reserve(b, 0, tokens=10)
    assert isinstance(r, Reservation)
    r.settle(0, 150, T0)
    denial = reserve(b, 0)
    assert isinstance(denial, Denial) and denial.code == "breaker_open"
    assert "team/b" in denial.message and denial.retry_after_seconds == 61


def test_config_changes_keep_spend_of_remaining_budgets() -> None:
    b = book(budget())
    r = reserve(b, 400)
    assert isinstance(r, Reservation)
    r.settle(400, 1, T0)
    raised = budget(limits=[Limit(period=Period.DAILY, amount_usd=Decimal("0.002"))])
    b.apply([raised], T0)
    limit = b.states()[0].limits[Period.DAILY]
    assert limit.spent_micros == 400 and limit.amount_micros == 2000
    assert isinstance(reserve(b, 1600), Reservation)


def test_a_block_refusal_marks_the_limit_exhausted_once() -> None:
    b = book(budget())
    r = reserve(b, 600)
    assert isinstance(r, Reservation)
    r.settle(600, 1, T0)  # 60 %: 50 crossed
    first = reserve(b, 600)
    assert isinstance(first, Denial)
    assert [(c.threshold, c.period) for c in first.crossings] == [(100, Period.DAILY)]
    second = reserve(b, 600)
    assert isinstance(second, Denial) and second.crossings == ()
    assert b.states()[0].limits[Period.DAILY].refused == 2
