"""Concurrency, restarts and hot reload on a real gateway over loopback HTTP."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import TEAM_KEY, GatewayFactory
from tests.gateway.harness import budget_manifest, key_secret
from tests.gateway.test_proxy_openai import MESSAGES, client, records, usage_of


async def _burst(url: str, n: int, max_tokens: int, delay_ms: int) -> list[int]:
    sdk = openai.AsyncOpenAI(base_url=url, api_key=TEAM_KEY, max_retries=0)

    async def one() -> int:
        try:
            await sdk.chat.completions.create(
                model="gpt-4.1",
                messages=MESSAGES,
                max_tokens=max_tokens,
                extra_body={"fake": {"delay_ms": delay_ms}},
            )
            return 200
        except openai.RateLimitError:
            return 429

    try:
        return await asyncio.gather(*(one() for _ in range(n)))
    finally:
        await sdk.close()


def test_n_parallel_requests_against_room_for_k_admit_k(make_gateway: GatewayFactory) -> None:
    # Admission reserves a cheap upper bound of the prompt (its UTF-8 bytes: 29 "tokens")
    # plus max_tokens: 29 * $2/M + 100 * $8/M = 858 micros. A limit of 5 * 858 micros has room
    # for exactly five requests in flight (a sixth does not fit even counted exactly: 822).
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.00429"}
        """
    )
    statuses = asyncio.run(_burst(gateway.url, 20, 100, delay_ms=1500))
    assert statuses.count(200) == 5 and statuses.count(429) == 15
    rows = records(gateway)
    billed = [r for r in rows if r["status"] == 200]
    assert len(billed) == 5
    usage = usage_of(gateway)
    daily = usage["limits"][0]
    assert daily["spentMicros"] == sum(r["cost_micros"] for r in billed) == 5 * 110
    assert daily["reservedTokens"] == 0 and daily["requests"] == 5


def test_ledger_total_equals_the_sum_of_settled_costs(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    statuses = asyncio.run(_burst(gateway.url, 60, 12, delay_ms=0))
    assert statuses.count(200) == 60
    rows = records(gateway)
    assert len(rows) == 60
    ledger_total = sum(r["cost_micros"] for r in rows)
    assert ledger_total == 60 * 110
    assert usage_of(gateway)["limits"][0]["spentMicros"] == ledger_total
    assert gateway.services.store.total_cost_micros() == ledger_total


def test_spend_survives_a_restart(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    for _ in range(3):
        client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    gateway.stop()
    gateway.start()
    usage = usage_of(gateway)
    assert usage["limits"][0]["spentMicros"] == 3 * 110
    assert usage["limits"][0]["spentTokens"] == 3 * 19
    client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert usage_of(gateway)["limits"][0]["spentMicros"] == 4 * 110


def test_crossed_thresholds_survive_a_restart(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.0002"}
        onExceeded: {action: AlertOnly}
        """
    )
    client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    crossed = [c["threshold"] for c in usage_of(gateway)["thresholdsCrossed"]]
    assert crossed == [50]
    gateway.stop()
    gateway.start()
    assert [c["threshold"] for c in usage_of(gateway)["thresholdsCrossed"]] == [50]
    client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert [c["threshold"] for c in usage_of(gateway)["thresholdsCrossed"]] == [50, 75, 90, 100]


def _wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_hot_reload_raises_a_limit_and_rejects_invalid_configs(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.0002"}
        """
    )
    sdk = client(gateway)
    sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=12)
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=12)
    revision = httpx.get(f"{gateway.root}/readyz").json()["configRevision"]

    # An invalid edit is refused; the previous config keeps serving.
    gateway.write(
        "team.yaml",
        budget_manifest(
            "team",
            "team",
            """\
        limits:
          - {period: Daily, amount: "-1"}
        """,
        )
        + "---\n"
        + key_secret("team", "team", "default", TEAM_KEY),
    )
    _wait_for(lambda: httpx.get(f"{gateway.root}/readyz").json()["lastReloadError"])
    ready = httpx.get(f"{gateway.root}/readyz").json()
    assert ready["configRevision"] == revision
    assert "spec.limits[0].amount" in ready["lastReloadError"]
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=12)

    # Raising the limit lifts the block without a restart, and spend carries over.
    gateway.write(
        "team.yaml",
        budget_manifest(
            "team",
            "team",
            """\
        limits:
          - {period: Daily, amount: "1"}
        """,
        )
        + "---\n"
        + key_secret("team", "team", "default", TEAM_KEY),
    )
    _wait_for(lambda: httpx.get(f"{gateway.root}/readyz").json()["configRevision"] != revision)
    sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=12)
    assert usage_of(gateway)["limits"][0]["spentMicros"] == 2 * 110


def test_deleting_a_key_secret_revokes_it(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    gateway.write(
        "team.yaml",
        budget_manifest(
            "team",
            "team",
            """\
        limits:
          - {period: Monthly, amount: "10"}
        """,
        ),
    )
    _wait_for(lambda: len(gateway.services.runtime.keys) == 1)
    with pytest.raises(openai.AuthenticationError):
        client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
