"""The token circuit breaker of a TokenBudget (熔断).

CLOSED: requests flow; tokens are counted over a rolling hour (one-minute buckets). When the
count reaches `tokens_per_hour` the breaker OPENS.
OPEN: every request is refused (`breaker_open`) until the cooldown has passed, then HALF_OPEN.
HALF_OPEN: the count restarts; `half_open_probes` requests are let through. If they complete
below the limit the breaker CLOSES (and keeps counting from there); if the limit is reached
again it OPENS for another cooldown. Other requests wait (are refused) while probes run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from llmbudget_gateway.contract.config import Breaker

BUCKET_SECONDS = 60
HOUR_BUCKETS = 60


class BreakerState(StrEnum):
    CLOSED = "Closed"
    OPEN = "Open"
    HALF_OPEN = "HalfOpen"


@dataclass
class TokenBreaker:
    config: Breaker
    state: BreakerState = BreakerState.CLOSED
    open_until: datetime | None = None
    _buckets: dict[int, int] = field(default_factory=dict)  # minute index -> tokens
    _since_minute: int = 0  # tokens before this minute no longer count (reset on half-open)
    _probes_admitted: int = 0
    _probes_done: int = 0
    _total: int = 0  # the sum of _buckets, kept up to date
    _pruned_minute: int = -1  # the minute buckets were last pruned for

    @staticmethod
    def _minute(now: datetime) -> int:
        return int(now.timestamp()) // BUCKET_SECONDS

    def tokens_last_hour(self, now: datetime) -> int:
        current = self._minute(now)
        if current != self._pruned_minute:  # buckets leave the hour once a minute at most
            first = max(current - HOUR_BUCKETS + 1, self._since_minute)
            for stale in [m for m in self._buckets if m < first]:
                self._total -= self._buckets.pop(stale)
            self._pruned_minute = current
        return self._total

    def retry_after(self, now: datetime) -> float:
        if self.open_until is None:
            return float(BUCKET_SECONDS)
        return max((self.open_until - now).total_seconds(), 1.0)

    def admit(self, now: datetime) -> tuple[bool, bool]:
        """(admitted, is_probe). Moves OPEN -> HALF_OPEN once the cooldown has passed."""
        if self.state is BreakerState.OPEN:
            if self.open_until is not None and now < self.open_until:
                return False, False
            self._half_open(now)
        if self.state is BreakerState.HALF_OPEN:
            if self._probes_admitted >= self.config.half_open_probes:
                return False, False
            self._probes_admitted += 1
            return True, True
        if self.tokens_last_hour(now) >= self.config.tokens_per_hour:
            self._open(now)
            return False, False
        return True, False

    def release_probe(self) -> None:
        """A probe that never reached the provider (refused elsewhere, cancelled): free its slot."""
        if self.state is BreakerState.HALF_OPEN and self._probes_admitted > self._probes_done:
            self._probes_admitted -= 1

    def record(self, tokens: int, now: datetime, probe: bool) -> None:
        """Count a finished request's tokens and move the state machine."""
        minute = self._minute(now)
        self._buckets[minute] = self._buckets.get(minute, 0) + tokens
        self._total += tokens
        over = self.tokens_last_hour(now) >= self.config.tokens_per_hour
        if self.state is BreakerState.HALF_OPEN:
            if probe:
                self._probes_done += 1
            if over:
                self._open(now)
            elif self._probes_done >= self.config.half_open_probes:
                self.state = BreakerState.CLOSED
                self.open_until = None
        elif self.state is BreakerState.CLOSED and over:
            self._open(now)

    def _open(self, now: datetime) -> None:
        self.state = BreakerState.OPEN
        self.open_until = now + timedelta(seconds=self.config.cooldown_seconds)

    def _half_open(self, now: datetime) -> None:
        self.state = BreakerState.HALF_OPEN
        self._since_minute = self._minute(now)
        self._buckets.clear()
        self._total = 0
        self._pruned_minute = -1
        self._probes_admitted = self._probes_done = 0
