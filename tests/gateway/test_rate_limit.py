"""Per-key rate limits: the bucket arithmetic, and 429s on a real gateway."""

from __future__ import annotations

import openai
import pytest

from llmbudget_gateway.contract.config import RateLimit
from llmbudget_gateway.rate_limit import KeyRateLimiter
from tests.gateway.conftest import OTHER_KEY, GatewayFactory
from tests.gateway.test_proxy_openai import MESSAGES, client

KEY = ("team", "default")


def test_a_bucket_allows_the_burst_then_the_rate() -> None:
    limiter = KeyRateLimiter()
    limit = RateLimit(requests_per_minute=60, burst=3)  # one a second, three at once
    assert [limiter.take(KEY, limit, 100.0) for _ in range(3)] == [None, None, None]
    wait = limiter.take(KEY, limit, 100.0)
    assert wait == pytest.approx(1.0)
    assert limiter.take(KEY, limit, 100.5) == pytest.approx(0.5)  # refused: no token taken
    assert limiter.take(KEY, limit, 101.0) is None
    assert limiter.take(("team", "other-key"), limit, 101.0) is None  # buckets are per key
    assert limiter.take(KEY, limit, 1000.0) is None  # refilled, capped at the burst
    assert [limiter.take(KEY, limit, 1000.0) for _ in range(3)] == [None, None, 1.0]
    limiter.retain({("team", "other-key")})
    assert limiter.take(KEY, limit, 1000.0) is None  # forgotten, then a fresh bucket
    assert KeyRateLimiter.retry_after(0.2) == 1 and KeyRateLimiter.retry_after(2.1) == 3


def test_a_runaway_loop_is_refused_before_the_provider(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Monthly, amount: "10"}
        rateLimit: {requestsPerMinute: 6, burst: 2}
        apiKeys:
          - name: default
        """
    )
    sdk = client(gateway)
    for _ in range(2):
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    body = refused.value.body
    assert isinstance(body, dict) and body["code"] == "rate_limit_exceeded"
    assert "6 requests per minute (burst 2)" in body["message"]
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 10
    # another namespace's key has its own limit (none here)
    for _ in range(5):
        client(gateway, key=OTHER_KEY).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    metrics = gateway.services.metrics.rate_limited.labels("team")._value.get()
    assert metrics == 1
