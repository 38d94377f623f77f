"""Which backend serves a request, and what happens when it fails.

The primary backend comes from the route's complexity tiers (complexity.py) or, without
tiers, from the weights. Each backend gets `retry.attempts` more tries on rate limits, 5xx
and connection errors, with exponential backoff and jitter (a provider's Retry-After
is honoured up to `retry.maxBackoff`); then the route's fallbacks are tried in order. A
stream is never retried once it has started: failures are only seen before the first byte.
Every failed attempt has its own ledger row; the caller pays for the attempt that succeeded.
An attempt the provider bills without the gateway getting the answer (a timeout after sending,
a body cut after its 200) is never retried: it is billed at an estimate and answered.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from llmbudget_gateway.complexity import choose_tier
from llmbudget_gateway.contract.config import Backend, Retry, Route
from llmbudget_gateway.metering import Exchange
from llmbudget_gateway.runtime import pick_weighted
from llmbudget_gateway.upstream_errors import UpstreamFailure

Attempt = Callable[[Backend], Awaitable[Response]]


@dataclass(frozen=True)
class Plan:
    backends: list[Backend]  # primary first, then fallbacks
    decision: str  # for the x-llmbudget-route header and the ledger

    def only(self, keep: Callable[[Backend], bool]) -> Plan:
        return Plan([b for b in self.backends if keep(b)], self.decision)


def plan(route: Route, body: dict[str, Any], rng: random.Random) -> Plan:
    by_name = {backend.name: backend for backend in route.backends}
    if route.tiers:
        tier = choose_tier(route, body)
        primary = by_name[tier.tier.backend]
        decision = tier.header(primary.name)
    else:
        primary = pick_weighted(route.backends, rng)
        decision = f"backend={primary.name}"
    order = [primary, *(by_name[n] for n in route.fallbacks if n != primary.name)]
    return Plan(order, decision)


def backoff(retry: Retry, attempt: int, retry_after: float | None, rng: random.Random) -> float:
    """Seconds before retry number `attempt` (0-based): exponential, jittered, capped."""
    delay: float = min(retry.max_backoff_seconds, retry.initial_backoff_seconds * 2**attempt)
    delay *= 0.5 + rng.random() / 2
    if retry_after is not None:
        delay = max(delay, min(retry_after, retry.max_backoff_seconds))
    return delay


async def send(exchange: Exchange, route: Route, chosen: Plan, attempt: Attempt) -> Response:
    """Try the plan's backends in order with `attempt(backend)`; the last failure is raised
    as a GatewayError after the exchange is settled. A failure the provider bills (see
    UpstreamFailure.billable) is settled at an estimate and never retried."""
    backends = chosen.backends
    rng = exchange.services.rng
    for index, backend in enumerate(backends):
        exchange.backend = backend
        for number in range(route.retry.attempts + 1):
            try:
                return await attempt(backend)
            except UpstreamFailure as failure:
                if failure.billable:
                    usage = exchange.estimate_undelivered(failure.whole_answer)
                    exchange.finish(
                        usage, failure.status, failure.code, estimated=True, at_worst_price=True
                    )
                    raise failure.error() from None
                last_backend = index == len(backends) - 1
                retry_here = failure.retryable and number < route.retry.attempts
                if failure.client_error or (last_backend and not retry_here):
                    exchange.finish(None, failure.status, failure.code)
                    raise failure.error() from None
                exchange.record_attempt(failure.upstream_status, failure.code)
                if not retry_here:
                    break  # next backend
                await asyncio.sleep(backoff(route.retry, number, failure.retry_after, rng))
    raise AssertionError("unreachable: the last backend always answers")
