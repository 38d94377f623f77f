"""The token circuit breaker's state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from llmbudget_gateway.breaker import BreakerState, TokenBreaker
from llmbudget_gateway.contract.config import Breaker

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def state(b: TokenBreaker) -> BreakerState:
    return b.state  # read through a call: the state changes behind mypy's narrowing


def breaker(probes: int = 2) -> TokenBreaker:
    return TokenBreaker(
        Breaker(tokens_per_hour=1000, cooldown_seconds=300, half_open_probes=probes)
    )


def test_opens_at_the_hourly_limit_and_refuses_for_the_cooldown() -> None:
    b = breaker()
    assert b.admit(T0) == (True, False)
    b.record(999, T0, probe=False)
    assert state(b) is BreakerState.CLOSED
    b.record(1, T0, probe=False)
    assert state(b) is BreakerState.OPEN and b.open_until == T0 + timedelta(seconds=300)
    assert b.admit(T0 + timedelta(seconds=299)) == (False, False)
    assert b.retry_after(T0 + timedelta(seconds=200)) == 100


def test_half_open_lets_probes_through_then_closes() -> None:
    b = breaker(probes=2)
    b.record(1000, T0, probe=False)
    later = T0 + timedelta(seconds=301)
    assert b.admit(later) == (True, True)
    assert state(b) is BreakerState.HALF_OPEN
    assert b.admit(later) == (True, True)
    assert b.admit(later) == (False, False)  # only two probes at a time
    b.record(10, later, probe=True)
    assert state(b) is BreakerState.HALF_OPEN
    b.record(10, later, probe=True)
    assert state(b) is BreakerState.CLOSED
    assert b.admit(later) == (True, False)
    assert b.tokens_last_hour(later) == 20  # counting restarted when half-open


def test_half_open_reopens_if_probes_hit_the_limit() -> None:
    b = breaker(probes=1)
    b.record(1000, T0, probe=False)
    later = T0 + timedelta(seconds=301)
    assert b.admit(later) == (True, True)
    b.record(1000, later, probe=True)
    assert state(b) is BreakerState.OPEN and b.open_until == later + timedelta(seconds=300)


def test_a_released_probe_frees_its_slot() -> None:
    b = breaker(probes=1)
    b.record(1000, T0, probe=False)
    later = T0 + timedelta(seconds=301)
    assert b.admit(later) == (True, True)
    assert b.admit(later) == (False, False)
    b.release_probe()
    assert b.admit(later) == (True, True)


def test_the_rolling_hour_forgets_old_tokens() -> None:
    b = breaker()
    b.record(900, T0, probe=False)
    assert b.tokens_last_hour(T0 + timedelta(minutes=59)) == 900
    assert b.tokens_last_hour(T0 + timedelta(minutes=61)) == 0
    b.record(900, T0 + timedelta(minutes=61), probe=False)
    assert state(b) is BreakerState.CLOSED
