"""POST /v1/messages with the `anthropic` SDK, metered like chat completions."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from tests.gateway.conftest import TEAM_KEY, GatewayFactory
from tests.gateway.harness import Gateway
from tests.gateway.test_anthropic import claude_route
from tests.gateway.test_proxy_openai import records, usage_of


def sdk(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.root, api_key=TEAM_KEY, max_retries=0)


def test_messages_are_relayed_and_billed_with_cache_tokens(
    make_gateway: GatewayFactory, fake: Any
) -> None:
    gateway = make_gateway(extra=claude_route(fake.url))
    message = sdk(gateway).messages.create(
        model="claude-sonnet-4.5",
        max_tokens=50,
        messages=[{"role": "user", "content": "count my tokens please"}],
        extra_body={"fake": {"cache_read": 100, "cache_write": 20}},
    )
    assert message.content[0].type == "text" and message.usage.output_tokens == 12
    row = records(gateway)[0]
    assert (row["endpoint"], row["provider"], row["routed_model"]) == (
        "messages",
        "Anthropic",
        "claude-sonnet-4-5",
    )
    assert (row["prompt_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (
        7 + 100 + 20,
        100,
        20,
    )
    assert row["cost_micros"] == 7 * 3 + 100 * 0.3 + 20 * 3.75 + 12 * 15


def test_streamed_messages_are_metered(make_gateway: GatewayFactory, fake: Any) -> None:
    gateway = make_gateway(extra=claude_route(fake.url))
    with sdk(gateway).messages.stream(
        model="claude-sonnet-4.5",
        max_tokens=50,
        messages=[{"role": "user", "content": "hello there"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 12 and final.usage.output_tokens == 12
    row = records(gateway)[0]
    assert row["stream"] and not row["estimated"]
    assert (row["prompt_tokens"], row["completion_tokens"]) == (5, 12)
    assert usage_of(gateway)["limits"][0]["spentMicros"] == 5 * 3 + 12 * 15


def test_errors_are_anthropic_shaped(make_gateway: GatewayFactory, fake: Any) -> None:
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.0001"}
        """,
        extra=claude_route(fake.url),
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        sdk(gateway).messages.create(
            model="claude-sonnet-4.5", max_tokens=500, messages=[{"role": "user", "content": "hi"}]
        )
    body: Any = caught.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "TokenBudget team/team" in body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError, match="use POST /v1/chat/completions"):
        sdk(gateway).messages.create(
            model="gpt-4.1", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=gateway.root, api_key="nope", max_retries=0).messages.create(
            model="claude-sonnet-4.5", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
