"""Issue 14, pricing and reservation: every path priced as the provider bills it.

Against the recording provider (recording_provider.py), with the real SDKs on loopback.
"""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.gateway.conftest import OTHER_KEY, TEAM_KEY, GatewayFactory
from tests.gateway.harness import Gateway
from tests.gateway.recording_provider import RecordingProvider
from tests.gateway.test_proxy_openai import client, records, usage_of


def sdk(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.root, api_key=TEAM_KEY, max_retries=0)


def modelroute(
    name: str, model: str, backends: str, namespace: str = "llmbudget-system", extra: str = ""
) -> str:
    return (
        "apiVersion: llmbudget.io/v1alpha1\nkind: ModelRoute\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n"
        f"  model: {model}\n  backends:\n{backends}{extra}---\n"
    )


def backend(
    name: str,
    url: str,
    price: str,
    provider: str = "OpenAI",
    model: str = "upstream-model",
    weight: int = 1,
    extra: str = "",
) -> str:
    return (
        f'    - {{name: {name}, provider: {provider}, baseURL: "{url}", model: {model}, '
        f'weight: {weight}, pricing: {{input: "{price}", output: "{price}"}}{extra}}}\n'
    )


def test_two_backends_of_one_upstream_model_bill_at_their_own_prices(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    # the shared route and team's own route reach the same (provider, baseURL, model) at
    # prices 10x apart; the first one priced used to price both
    shared = modelroute("shared", "llm", backend("main", recorder.url, "1"))
    negotiated = modelroute("mine", "llm", backend("main", recorder.url, "10"), "team")
    gateway = make_gateway(extra=shared + negotiated)
    client(gateway, key=OTHER_KEY).chat.completions.create(
        model="llm", messages=[{"role": "user", "content": "hi"}]
    )
    client(gateway).chat.completions.create(
        model="llm", messages=[{"role": "user", "content": "hi"}]
    )
    other, team = records(gateway, "other")[0], records(gateway, "team")[0]
    served = recorder.bills[1]
    tokens = served.prompt_tokens + served.completion_tokens
    assert (other["route"], team["route"]) == ("shared", "mine")
    assert other["cost_micros"] == tokens * 1
    assert team["cost_micros"] == tokens * 10  # not 1x: a 10x under-bill before


BLOCK_100_MICROS = """\
limits:
  - {period: Daily, amount: "0.0001"}
"""


def test_reservation_is_priced_at_the_dearest_fallback(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    backends = backend("cheap", recorder.url, "1") + backend("dear", recorder.url, "10", weight=0)
    route = modelroute("fb", "fb", backends, extra="  fallbacks: [dear]\n  retry: {attempts: 0}\n")
    gateway = make_gateway(budget_spec=BLOCK_100_MICROS, extra=route)
    # the cheap primary fails, the fallback bills at 10x: reserved at the cheap price it was
    # admitted (about 40 micros) and spent 170 of a 100 micro-dollar Daily limit
    with pytest.raises(openai.RateLimitError) as refused:
        client(gateway).chat.completions.create(
            model="fb",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=10,
            extra_body={"fake": {"status": 500, "fail_first": 1, "key": "fb"}},
        )
    assert refused.value.code == "budget_exceeded"
    daily = usage_of(gateway)["limits"][0]
    assert daily["spentMicros"] <= 100 and daily["reservedTokens"] == 0
    assert recorder.bills == []  # refused before anything was sent


def test_a_fallback_that_fits_is_reserved_and_billed_at_its_price(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    backends = backend("cheap", recorder.url, "1") + backend("dear", recorder.url, "3", weight=0)
    route = modelroute("fb", "fb", backends, extra="  fallbacks: [dear]\n  retry: {attempts: 0}\n")
    gateway = make_gateway(budget_spec=BLOCK_100_MICROS, extra=route)
    client(gateway).chat.completions.create(
        model="fb",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        extra_body={"fake": {"status": 500, "fail_first": 1, "key": "fb-fits"}},
    )
    served = recorder.bills[0]
    row = next(r for r in records(gateway) if r["status"] == 200)
    assert row["backend"] == "dear"
    assert row["cost_micros"] == 3 * (served.prompt_tokens + served.completion_tokens)
    daily = usage_of(gateway)["limits"][0]
    assert daily["spentMicros"] == row["cost_micros"] <= 100 and daily["reservedTokens"] == 0


def claude_route(url: str, model: str = "claude", price: str = "3") -> str:
    return modelroute(model, model, backend("claude", url, price, "Anthropic", "claude-x"))


@pytest.mark.parametrize(
    "field",
    [{"max_tokens": 64000}, {"stream": True}, {"model": "claude-opus"}, {"messages": []},
     {"system": "ignore the user"}, {"max_completion_tokens": 5000}],
)  # fmt: skip
def test_the_anthropic_object_cannot_override_what_the_gateway_controls(
    make_gateway: GatewayFactory, recorder: RecordingProvider, field: dict[str, Any]
) -> None:
    gateway = make_gateway(extra=claude_route(recorder.url))
    with pytest.raises(openai.BadRequestError) as refused:
        client(gateway).chat.completions.create(
            model="claude",
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=10,
            extra_body={"anthropic": field},
        )
    assert refused.value.code == "unsupported_parameter"
    assert recorder.bills == []  # nothing reached the provider
    assert usage_of(gateway)["limits"][0]["reservedTokens"] == 0


def test_the_anthropic_object_passes_the_allowed_fields(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    gateway = make_gateway(extra=claude_route(recorder.url))
    client(gateway).chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=10,
        extra_body={"anthropic": {"top_k": 5, "metadata": {"user_id": "u1"}}},
    )
    sent = recorder.bills[0].body
    assert (sent["top_k"], sent["metadata"], sent["max_tokens"]) == (5, {"user_id": "u1"}, 10)
    assert "stream" not in sent and sent["model"] == "claude-x"


@pytest.mark.parametrize(
    "body",
    [{"stream": "yes"}, {"service_tier": "priority"}, {"max_tokens": "64000"},
     {"max_tokens": 0}],
)  # fmt: skip
def test_messages_take_only_validated_api_fields(
    make_gateway: GatewayFactory, recorder: RecordingProvider, body: dict[str, Any]
) -> None:
    gateway = make_gateway(extra=claude_route(recorder.url))
    request = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    response = httpx.post(
        f"{gateway.root}/v1/messages",
        json={**request, **body},
        headers={"x-api-key": TEAM_KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert recorder.bills == []


def test_messages_settle_a_non_json_200(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    gateway = make_gateway(extra=claude_route(recorder.url))
    with pytest.raises(anthropic.APIStatusError) as failed:
        sdk(gateway).messages.create(
            model="claude",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"fake": {"fault": "garbage"}},
        )
    assert failed.value.status_code == 502
    assert "<html" not in str(failed.value.body).lower()  # the provider's body is not relayed
    (row,) = records(gateway)
    assert (row["status"], row["error_code"], row["estimated"]) == (
        502,
        "upstream_invalid_response",
        True,
    )
    served = recorder.bills[0]
    assert row["cost_micros"] >= 3 * (served.prompt_tokens + served.completion_tokens)
    limits = usage_of(gateway)["limits"][0]
    assert limits["reservedTokens"] == 0 and limits["spentMicros"] == row["cost_micros"]


def test_messages_honour_downgrade_budgets(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    routes = claude_route(recorder.url, "claude", "3") + claude_route(recorder.url, "haiku", "1")
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.00008"}
        onExceeded: {action: Downgrade, downgradeTo: haiku, downgradeAtPercent: 50}
        """,
        extra=routes,
    )
    heads = []
    for _ in range(3):
        raw = sdk(gateway).messages.with_raw_response.create(
            model="claude", max_tokens=10, messages=[{"role": "user", "content": "hello there"}]
        )
        heads.append(raw.headers.get("x-llmbudget-downgraded"))
    assert heads == [None, "claude -> haiku", "claude -> haiku"]
    downgraded = [r for r in records(gateway) if r["route"] == "haiku"]
    assert len(downgraded) == 2
    assert all(r["route_decision"].startswith("downgrade to haiku") for r in downgraded)


@pytest.mark.parametrize("endpoint", ["chat", "messages"])
def test_tools_are_reserved_with_the_providers_tool_prompt(
    make_gateway: GatewayFactory, recorder: RecordingProvider, endpoint: str
) -> None:
    """Anthropic adds a tool-use system prompt of a few hundred tokens when tools are given:
    a request with tools is reserved with it, on both endpoints, so a token limit it would
    break refuses it before the provider bills it."""
    gateway = make_gateway(
        budget_spec="limits: [{period: Daily, tokens: 400}]\n", extra=claude_route(recorder.url)
    )
    tool: Any = {"name": "lookup", "description": "find", "input_schema": {"type": "object"}}
    messages: Any = [{"role": "user", "content": "hi"}]
    if endpoint == "chat":
        openai_tool: Any = {"type": "function", "function": {"name": "lookup", "parameters": {}}}
        plain = client(gateway).chat.completions.create(
            model="claude", messages=messages, max_tokens=5
        )
        assert plain.choices[0].message.content  # without tools it fits
        with pytest.raises(openai.RateLimitError):
            client(gateway).chat.completions.create(
                model="claude", messages=messages, max_tokens=5, tools=[openai_tool],
            )  # fmt: skip
    else:
        sdk(gateway).messages.create(model="claude", messages=messages, max_tokens=5)
        with pytest.raises(anthropic.RateLimitError):
            sdk(gateway).messages.create(
                model="claude", messages=messages, max_tokens=5, tools=[tool],
            )  # fmt: skip
