"""Budget decisions and settlement, in memory, exact within one gateway process.

*Decision* (`BudgetBook.reserve`): before a request is forwarded, its worst-case cost and
tokens are reserved against every limit of every TokenBudget that matches it, and against the
budgets' circuit breakers. If any Block limit would be exceeded the request is refused with the
budget, the limit and the reset time; nothing is reserved. The check and the reservation happen
without awaiting, so on one event loop N concurrent requests against room for k admit at most k.

*Settlement* (`Reservation.settle`): the reservation is replaced by the real cost and tokens,
exactly once; a second call does nothing. `Reservation.release` undoes a reservation that was
never used (refused upstream before any token was consumed, or cancelled before sending).

Money is integer micro-dollars, tokens are ints. Pricing is elsewhere (pricing.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from llmbudget_gateway.breaker import BreakerState, TokenBreaker
from llmbudget_gateway.contract.config import Budget, Limit
from llmbudget_gateway.contract.money import format_usd, micros_to_usd, usd_to_micros
from llmbudget_gateway.contract.specs import Action, Period
from llmbudget_gateway.periods import Window, window_at


@dataclass
class LimitState:
    """Spend against one limit in its current window."""

    limit: Limit
    window: Window
    amount_micros: int | None
    spent_micros: int = 0
    spent_tokens: int = 0
    reserved_micros: int = 0
    reserved_tokens: int = 0
    requests: int = 0
    refused: int = 0  # requests a Block limit refused in this window

    def would_exceed(self, micros: int, tokens: int) -> bool:
        if self.amount_micros is not None and (
            self.spent_micros + self.reserved_micros + micros > self.amount_micros
        ):
            return True
        return self.limit.tokens is not None and (
            self.spent_tokens + self.reserved_tokens + tokens > self.limit.tokens
        )

    def percent_used(self) -> float:
        """The larger of the dollar and token percentages of settled spend."""
        percent = 0.0
        if self.amount_micros:
            percent = self.spent_micros * 100 / self.amount_micros
        if self.limit.tokens:
            percent = max(percent, self.spent_tokens * 100 / self.limit.tokens)
        return percent


@dataclass(frozen=True)
class Crossing:
    """A threshold crossed in a window: recorded once so the operator alerts once."""

    budget: str  # namespace/name
    period: Period
    window_start: datetime
    threshold: int
    crossed_at: datetime


@dataclass
class BudgetState:
    budget: Budget
    limits: dict[Period, LimitState]
    breaker: TokenBreaker | None = None
    crossed: set[tuple[Period, datetime, int]] = field(default_factory=set)

    def limit_state(self, period: Period, now: datetime) -> LimitState:
        """The limit's state for the window containing `now`, rolling it over if it ended."""
        state = self.limits[period]
        if not state.window.contains(now):
            window = window_at(period, self.budget.timezone, now)
            state = LimitState(state.limit, window, state.amount_micros)
            self.limits[period] = state
        return state

    def matches(self, namespace: str, tags: Mapping[str, str]) -> bool:
        return self.budget.namespace == namespace and all(
            tags.get(tag) == value for tag, value in self.budget.scope.items()
        )


@dataclass(frozen=True)
class Denial:
    code: str  # "budget_exceeded" or "breaker_open"
    budget: Budget
    message: str
    retry_after_seconds: int
    crossings: tuple[Crossing, ...] = ()


@dataclass
class Reservation:
    micros: int
    tokens: int
    charges: list[tuple[BudgetState, LimitState]]
    probes: list[TokenBreaker]
    breakers: list[TokenBreaker]
    budgets: list[str]
    downgrade_to: str | None = None
    settled: bool = False

    def settle(self, micros: int, tokens: int, now: datetime) -> list[Crossing]:
        """Replace the reservation with the real cost. Idempotent: later calls return []."""
        if self.settled:
            return []
        self.settled = True
        crossings: list[Crossing] = []
        for state, limit in self.charges:
            limit.reserved_micros -= self.micros
            limit.reserved_tokens -= self.tokens
            limit.spent_micros += micros
            limit.spent_tokens += tokens
            limit.requests += 1
            crossings += _new_crossings(state, limit, now)
        for breaker in self.breakers:
            breaker.record(tokens, now, probe=breaker in self.probes)
        return crossings

    def release(self) -> None:
        """Undo a reservation that consumed nothing. Idempotent, and a no-op once settled."""
        if self.settled:
            return
        self.settled = True
        for _, limit in self.charges:
            limit.reserved_micros -= self.micros
            limit.reserved_tokens -= self.tokens
        for breaker in self.probes:
            breaker.release_probe()


def _new_crossings(state: BudgetState, limit: LimitState, now: datetime) -> list[Crossing]:
    percent = limit.percent_used()
    found = []
    for threshold in state.budget.thresholds:
        key = (limit.limit.period, limit.window.start, threshold)
        if percent >= threshold and key not in state.crossed:
            state.crossed.add(key)
            found.append(
                Crossing(state.budget.key, limit.limit.period, limit.window.start, threshold, now)
            )
    return found


def _exhausted_crossing(state: BudgetState, limit: LimitState, now: datetime) -> list[Crossing]:
    key = (limit.limit.period, limit.window.start, 100)
    if 100 not in state.budget.thresholds or key in state.crossed:
        return []
    state.crossed.add(key)
    return [Crossing(state.budget.key, limit.limit.period, limit.window.start, 100, now)]


def refusal(state: BudgetState, limit: LimitState, now: datetime) -> Denial:
    """The 429 for a Block limit that would be exceeded (here, or in the shared ledger).

    A Block limit that refuses requests is exhausted for its callers: the budget's state
    becomes Exceeded and its 100 % threshold fires, once."""
    limit.refused += 1
    budget, period = state.budget, limit.limit.period
    return Denial(
        "budget_exceeded",
        budget,
        f"TokenBudget {budget.key} would exceed its {period.value} limit "
        f"({_describe(limit)}); it resets at {_reset_text(limit.window)}",
        max(int((limit.window.end - now).total_seconds()) + 1, 1),
        tuple(_exhausted_crossing(state, limit, now)),
    )


def _reset_text(window: Window) -> str:
    return window.end.strftime("%Y-%m-%dT%H:%M:%SZ")


class BudgetBook:
    """Every budget's spend in its current windows."""

    def __init__(self) -> None:
        self._states: dict[str, BudgetState] = {}
        self._by_namespace: dict[str, list[BudgetState]] = {}

    def apply(self, budgets: Iterable[Budget], now: datetime) -> None:
        """Take a new set of budgets. Spend carries over for budgets and periods that remain."""
        states: dict[str, BudgetState] = {}
        for budget in budgets:
            old = self._states.get(budget.key)
            limits: dict[Period, LimitState] = {}
            for limit in budget.limits:
                micros = usd_to_micros(limit.amount_usd) if limit.amount_usd else None
                window = window_at(limit.period, budget.timezone, now)
                previous = old.limits.get(limit.period) if old else None
                if previous is not None and previous.window == window:
                    previous.limit, previous.amount_micros = limit, micros
                    limits[limit.period] = previous
                else:
                    limits[limit.period] = LimitState(limit, window, micros)
            breaker = None
            if budget.breaker is not None:
                if old is not None and old.breaker is not None:
                    breaker = old.breaker
                    breaker.config = budget.breaker
                else:
                    breaker = TokenBreaker(budget.breaker)
            state = BudgetState(budget, limits, breaker, old.crossed if old else set())
            states[budget.key] = state
        self._states = states
        by_namespace: dict[str, list[BudgetState]] = {}
        for state in states.values():
            by_namespace.setdefault(state.budget.namespace, []).append(state)
        self._by_namespace = by_namespace

    def states(self) -> list[BudgetState]:
        return list(self._states.values())

    def get(self, key: str) -> BudgetState | None:
        return self._states.get(key)

    def matching(self, namespace: str, tags: Mapping[str, str]) -> list[BudgetState]:
        return [s for s in self._by_namespace.get(namespace, ()) if s.matches(namespace, tags)]

    def would_refuse(
        self, namespace: str, tags: Mapping[str, str], micros: int, tokens: int, now: datetime
    ) -> bool:
        """Whether reserve() would refuse for a Block limit (no side effects)."""
        for state in self.matching(namespace, tags):
            if state.budget.action is Action.BLOCK:
                for period in state.limits:
                    if state.limit_state(period, now).would_exceed(micros, tokens):
                        return True
        return False

    def downgrade_target(
        self, namespace: str, tags: Mapping[str, str], now: datetime
    ) -> str | None:
        """The model a Downgrade budget sends this request to, or None (no side effects).

        Decided before the reservation, so that the request is reserved at the prices of the
        model that will serve it."""
        target = None
        for state in self.matching(namespace, tags):
            budget = state.budget
            if budget.action is not Action.DOWNGRADE or not budget.downgrade_to:
                continue
            for period in state.limits:
                if state.limit_state(period, now).percent_used() >= budget.downgrade_at_percent:
                    target = budget.downgrade_to
        return target

    def reserve(
        self,
        namespace: str,
        tags: Mapping[str, str],
        micros: int,
        tokens: int,
        now: datetime,
    ) -> Reservation | Denial:
        """Admit (and reserve) or refuse a request. Never awaits: atomic on the event loop."""
        states = self.matching(namespace, tags)
        charges: list[tuple[BudgetState, LimitState]] = []
        downgrade_to = None
        for state in states:
            budget = state.budget
            for period in state.limits:
                limit = state.limit_state(period, now)
                if (
                    budget.action is Action.DOWNGRADE
                    and budget.downgrade_to
                    and limit.percent_used() >= budget.downgrade_at_percent
                ):
                    downgrade_to = budget.downgrade_to
                if budget.action is Action.BLOCK and limit.would_exceed(micros, tokens):
                    return refusal(state, limit, now)
                charges.append((state, limit))
        breakers: list[TokenBreaker] = []
        probes: list[TokenBreaker] = []
        for state in states:
            breaker = state.breaker
            if breaker is None:
                continue
            admitted, probe = breaker.admit(now)
            if not admitted:
                for admitted_probe in probes:
                    admitted_probe.release_probe()
                return Denial(
                    "breaker_open",
                    state.budget,
                    f"TokenBudget {state.budget.key}: token circuit breaker is "
                    f"{breaker.state.value} ({breaker.config.tokens_per_hour} tokens per hour "
                    "reached); retry after the cooldown",
                    int(breaker.retry_after(now)) + 1,
                )
            breakers.append(breaker)
            if probe:
                probes.append(breaker)
        for _, limit in charges:
            limit.reserved_micros += micros
            limit.reserved_tokens += tokens
        return Reservation(
            micros=micros,
            tokens=tokens,
            charges=charges,
            probes=probes,
            breakers=breakers,
            budgets=[state.budget.key for state in states],
            downgrade_to=downgrade_to,
        )

    def restore(
        self,
        key: str,
        period: Period,
        window_start: datetime,
        micros: int,
        tokens: int,
        requests: int,
    ) -> None:
        """Set a window's settled spend from the ledger (after a restart)."""
        state = self._states.get(key)
        if state is None or period not in state.limits:
            return
        limit = state.limits[period]
        if limit.window.start == window_start:
            limit.spent_micros, limit.spent_tokens, limit.requests = micros, tokens, requests

    def mark_crossed(
        self, key: str, period: Period, window_start: datetime, threshold: int
    ) -> None:
        state = self._states.get(key)
        if state is not None:
            state.crossed.add((period, window_start, threshold))

    @staticmethod
    def breaker_state(state: BudgetState, now: datetime) -> BreakerState | None:
        if state.breaker is None:
            return None
        if (
            state.breaker.state is BreakerState.OPEN
            and state.breaker.open_until
            and (now >= state.breaker.open_until)
        ):
            return BreakerState.HALF_OPEN
        return state.breaker.state


def _describe(limit: LimitState) -> str:
    parts = []
    if limit.amount_micros is not None and limit.limit.amount_usd is not None:
        spent = format_usd(micros_to_usd(limit.spent_micros))
        parts.append(f"{format_usd(limit.limit.amount_usd)} USD, {spent} USD spent")
    if limit.limit.tokens is not None:
        parts.append(f"{limit.limit.tokens} tokens, {limit.spent_tokens} used")
    return "; ".join(parts)
