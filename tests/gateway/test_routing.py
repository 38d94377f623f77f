"""Backend choice (weights, tiers, fallbacks) and backoff arithmetic."""

from __future__ import annotations

import random
from collections import Counter

from llmbudget_gateway.contract.config import Backend, Retry, Route
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.routing import backoff, plan


def backend(name: str, weight: int = 1) -> Backend:
    return Backend(
        name=name, provider=Provider.OPENAI, base_url="http://x/v1", model=name, weight=weight
    )


def test_weights_hold_within_two_percent_over_10000_requests() -> None:
    route = Route(
        namespace="n", name="r", model="m", backends=[backend("stable", 95), backend("canary", 5)]
    )
    rng = random.Random(7)
    counts = Counter(plan(route, {}, rng).backends[0].name for _ in range(10_000))
    assert abs(counts["canary"] / 10_000 - 0.05) <= 0.02
    assert abs(counts["stable"] / 10_000 - 0.95) <= 0.02


def test_a_zero_weight_backend_only_serves_as_fallback() -> None:
    route = Route(
        namespace="n",
        name="r",
        model="m",
        backends=[backend("main", 1), backend("spare", 0)],
        fallbacks=["spare"],
    )
    rng = random.Random(1)
    for _ in range(200):
        order = [b.name for b in plan(route, {}, rng).backends]
        assert order == ["main", "spare"]


def test_backoff_grows_is_capped_jittered_and_honours_retry_after() -> None:
    retry = Retry(attempts=5, initial_backoff_seconds=0.25, max_backoff_seconds=2.0)
    rng = random.Random(3)
    delays = [backoff(retry, attempt, None, rng) for attempt in range(6)]
    assert 0.125 <= delays[0] <= 0.25 and 0.25 <= delays[1] <= 0.5
    assert all(d <= 2.0 for d in delays)
    assert backoff(retry, 0, 1.5, rng) >= 1.5  # Retry-After wins when longer
    assert backoff(retry, 0, 60, rng) == 2.0  # ... up to maxBackoff
