"""Retries, fallbacks and tiers end to end, against the scripted fake provider."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import openai

from tests.gateway.conftest import GatewayFactory
from tests.gateway.harness import free_port
from tests.gateway.test_proxy_openai import MESSAGES, client, records, usage_of


def route(model: str, backends: str, extra: str = "") -> str:
    return (
        f"apiVersion: llmbudget.io/v1alpha1\nkind: ModelRoute\n"
        f"metadata: {{name: {model}, namespace: llmbudget-system}}\nspec:\n"
        f"  model: {model}\n  backends:\n{backends}{extra}"
    )


def backend(name: str, url: str, weight: int = 1, price: str = "2") -> str:
    return (
        f'    - {{name: {name}, provider: OpenAI, baseURL: "{url}", weight: {weight}, '
        f'pricing: {{input: "{price}", output: "8"}}}}\n'
    )


RETRY = "  retry: {attempts: 2, initialBackoff: 10ms, maxBackoff: 2s}\n"


def test_a_flaky_backend_is_retried_and_billed_once(
    make_gateway: GatewayFactory, fake: Any
) -> None:
    gateway = make_gateway(extra=route("flaky", backend("main", fake.url), RETRY))
    reply = client(gateway, **{"X-Session-Id": "s-1"}).chat.completions.create(
        model="flaky",
        messages=MESSAGES,
        extra_body={"fake": {"status": 500, "fail_first": 2, "key": "flaky-1"}},
    )
    assert reply.choices[0].message.content
    rows = sorted(records(gateway), key=lambda r: r["request_id"])
    assert [(r["status"], r["cost_micros"]) for r in rows] == [(200, 110), (500, 0), (500, 0)]
    assert rows[1]["request_id"] == rows[0]["request_id"] + ".1"
    assert {r["session_id"] for r in rows} == {"s-1"}  # attempts carry the request's tags
    assert usage_of(gateway)["limits"][0]["spentMicros"] == 110


def test_fallback_after_the_primary_fails(make_gateway: GatewayFactory, fake: Any) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    backends = backend("dead", dead, 1) + backend("spare", fake.url, 0)
    gateway = make_gateway(extra=route("fallback", backends, RETRY + "  fallbacks: [spare]\n"))
    raw = client(gateway).chat.completions.with_raw_response.create(
        model="fallback", messages=MESSAGES
    )
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-llmbudget-route"] == "backend=dead"
    rows = sorted(records(gateway), key=lambda r: r["request_id"])
    assert [(r["backend"], r["status"]) for r in rows] == [
        ("spare", 200),
        ("dead", 502),
        ("dead", 502),
        ("dead", 502),
    ]


def test_retry_after_is_honoured(make_gateway: GatewayFactory, fake: Any) -> None:
    gateway = make_gateway(extra=route("limited", backend("main", fake.url), RETRY))
    started = time.monotonic()
    client(gateway).chat.completions.create(
        model="limited",
        messages=MESSAGES,
        extra_body={"fake": {"status": 429, "fail_first": 1, "key": "limited-1", "retry_after": 1}},
    )
    assert time.monotonic() - started >= 1.0


def test_client_errors_are_not_retried(make_gateway: GatewayFactory, fake: Any) -> None:
    gateway = make_gateway(extra=route("strict", backend("main", fake.url), RETRY))
    with contextlib.suppress(openai.BadRequestError):
        client(gateway).chat.completions.create(
            model="strict", messages=MESSAGES, extra_body={"fake": {"status": 400}}
        )
    assert [r["status"] for r in records(gateway)] == [400]


def test_tiers_route_by_complexity(make_gateway: GatewayFactory, fake: Any) -> None:
    backends = backend("cheap", fake.url, price="1") + backend("big", fake.url, price="3")
    tiers = (
        "  tiers:\n    - {name: simple, backend: cheap, maxScore: 30}\n"
        "    - {name: complex, backend: big}\n"
    )
    gateway = make_gateway(extra=route("auto", backends, tiers))
    simple = client(gateway).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hello"}]
    )
    assert simple.headers["x-llmbudget-route"] == "tier=simple score=0 backend=cheap"
    hard = client(gateway).chat.completions.with_raw_response.create(
        model="auto",
        messages=[
            {
                "role": "user",
                "content": "Prove step by step why this holds, then derive the "
                "trade-offs:\n```py\nx = 1\n```",
            }
        ],
    )
    assert hard.headers["x-llmbudget-route"].startswith("tier=complex")
    rows = {r["backend"]: r for r in records(gateway)}
    assert rows["cheap"]["route_decision"].startswith("tier=simple")
    assert rows["big"]["route_decision"].startswith("tier=complex")


def test_downgrade_sends_requests_to_the_cheaper_model(
    make_gateway: GatewayFactory, fake: Any
) -> None:
    cheap = route("cheap-model", backend("main", fake.url, price="1"))
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.0002"}
        onExceeded: {action: Downgrade, downgradeTo: cheap-model, downgradeAtPercent: 50}
        """,
        extra=cheap,
    )
    first = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4.1", messages=MESSAGES
    )
    assert "x-llmbudget-downgraded" not in first.headers  # 110 of 200 micros: 55 % after it
    second = client(gateway).chat.completions.with_raw_response.create(
        model="gpt-4.1", messages=MESSAGES
    )
    assert second.headers["x-llmbudget-downgraded"] == "gpt-4.1 -> cheap-model"
    rows = sorted(records(gateway), key=lambda r: r["request_id"])
    assert rows[1]["route"] == "cheap-model"
    assert rows[1]["route_decision"].startswith("downgrade to cheap-model")
    assert rows[1]["cost_micros"] == 7 * 1 + 12 * 8  # priced at the cheaper backend
