"""The response cache: unit behaviour and end to end through the openai SDK."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from llmbudget_gateway.contract.config import Backend, Route
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.response_cache import ResponseCache, as_stream
from tests.gateway.conftest import TEAM_KEY, GatewayFactory
from tests.gateway.harness import budget_manifest, key_secret, route_manifest
from tests.gateway.test_proxy_openai import MESSAGES, client, records, usage_of

ROUTE = Route(
    namespace="n",
    name="r",
    model="m",
    backends=[Backend(name="b", provider=Provider.OPENAI, base_url="http://x/v1", model="m")],
)


def test_keys_ignore_stream_and_user_but_not_the_prompt() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "a"}]}
    key = ResponseCache.key(ROUTE, "n", body)
    assert key == ResponseCache.key(ROUTE, "n", {**body, "stream": True, "user": "ada"})
    other = {**body, "messages": [{"role": "user", "content": "b"}]}
    assert key != ResponseCache.key(ROUTE, "n", other)
    assert key != ResponseCache.key(ROUTE, "n", {**body, "temperature": 0.5})
    assert key != ResponseCache.key(ROUTE, "other-namespace", body)


def test_ttl_and_lru_eviction() -> None:
    cache = ResponseCache(max_entries=2)
    cache.put("a", b"1", 10, ttl=5, now=0)
    cache.put("b", b"2", 10, ttl=5, now=0)
    assert cache.get("a", now=1) is not None  # a is now the most recent
    cache.put("c", b"3", 10, ttl=5, now=1)
    assert cache.get("b", now=1) is None and len(cache) == 2
    assert cache.get("a", now=6) is None  # expired


def test_a_cached_answer_replays_as_a_stream() -> None:
    answer = {
        "id": "x",
        "created": 1,
        "model": "m",
        "usage": {"total_tokens": 3},
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "hello"},
            }
        ],
    }
    events = as_stream(orjson.dumps(answer), include_usage=True)
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["content"] == "hello"
    assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[2]["usage"] == {"total_tokens": 3}


def test_hits_cost_nothing_and_are_counted(make_gateway: GatewayFactory, fake: Any) -> None:
    cached_route = (
        "apiVersion: llmbudget.io/v1alpha1\nkind: ModelRoute\n"
        "metadata: {name: cached, namespace: llmbudget-system}\nspec:\n"
        "  model: cached-model\n  cache: {ttl: 5m}\n  backends:\n"
        f'    - {{name: main, provider: OpenAI, baseURL: "{fake.url}", '
        'pricing: {input: "2", output: "8"}}\n'
    )
    gateway = make_gateway(extra=cached_route)
    sdk = client(gateway)
    first = sdk.chat.completions.with_raw_response.create(model="cached-model", messages=MESSAGES)
    assert first.headers["x-llmbudget-cache"] == "miss"
    second = sdk.chat.completions.with_raw_response.create(model="cached-model", messages=MESSAGES)
    assert second.headers["x-llmbudget-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    streamed = list(
        sdk.chat.completions.create(model="cached-model", messages=MESSAGES, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == (
        first.parse().choices[0].message.content
    )
    bypass = httpx.post(
        f"{gateway.url}/chat/completions",
        headers={"Authorization": f"Bearer {TEAM_KEY}", "Cache-Control": "no-cache"},
        json={"model": "cached-model", "messages": MESSAGES},
    )
    assert bypass.headers["x-llmbudget-cache"] == "bypass"
    rows = records(gateway)
    assert sorted(r["cost_micros"] for r in rows) == [0, 0, 110, 110]
    assert sum(r["route_decision"] == "cache hit" for r in rows) == 2
    assert usage_of(gateway)["limits"][0]["spentMicros"] == 220
    metrics = httpx.get(gateway.metrics_url).text
    assert (
        'llmbudget_cache_requests_total{model="cached-model",namespace="team",result="hit"} 2.0'
    ) in metrics
    assert (
        'llmbudget_cache_saved_usd_total{model="cached-model",namespace="team"} 0.00022' in metrics
    )


def test_a_downgraded_answer_is_not_cached_for_the_requested_model(
    make_gateway: GatewayFactory, fake: Any
) -> None:
    """While a Downgrade budget sends `premium` to `cheap`, the cheap answers must not be
    stored under premium's key: once the budget has room again, premium is answered by
    premium, not by a cached cheap answer."""
    cache = "  cache: {ttl: 5m}\n"
    routes = route_manifest("premium", fake.url, extra=cache) + "---\n"
    routes += route_manifest("cheap", fake.url, extra=cache)
    gateway = make_gateway(
        budget_spec="""\
            limits:
              - {period: Daily, amount: "0.00001"}
            onExceeded: {action: Downgrade, downgradeTo: cheap, downgradeAtPercent: 50}
            """,
        extra=routes,
    )

    def ask(content: str) -> httpx.Response:
        return httpx.post(
            f"{gateway.url}/chat/completions",
            headers={"Authorization": f"Bearer {TEAM_KEY}"},
            json={"model": "premium", "max_tokens": 5,
                  "messages": [{"role": "user", "content": content}]},
        )  # fmt: skip

    ask("spend something first")
    downgraded = ask("the question")
    assert downgraded.headers["x-llmbudget-downgraded"] == "premium -> cheap"
    gateway.write(
        "team.yaml",
        budget_manifest("team", "team", 'limits: [{period: Daily, amount: "100"}]\n')
        + "---\n"
        + key_secret("team", "team", "default", TEAM_KEY),
    )
    wait_until_reloaded = time.monotonic() + 10
    while ask("a fresh question").headers.get("x-llmbudget-downgraded"):
        assert time.monotonic() < wait_until_reloaded, "the raised limit was never applied"
        time.sleep(0.1)
    again = ask("the question")
    assert again.json()["model"] == "premium"
    assert again.headers.get("x-llmbudget-cache") == "miss"
