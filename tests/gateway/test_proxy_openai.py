"""The gateway through the `openai` SDK, against the fake provider, over loopback HTTP."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from tests.gateway.conftest import OTHER_KEY, TEAM_KEY, GatewayFactory
from tests.gateway.harness import ADMIN_TOKEN, Gateway

MESSAGES: list[Any] = [{"role": "user", "content": "count my tokens please"}]
# The fake provider bills 4 words + 3 = 7 prompt tokens and 12 completion tokens for MESSAGES:
# 7 * $2/M + 12 * $8/M = 14 + 96 = 110 micro-dollars.
COST_MICROS = 110


def client(gateway: Gateway, key: str = TEAM_KEY, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url, api_key=key, default_headers=headers, max_retries=0)


def records(gateway: Gateway, namespace: str | None = "team") -> list[dict[str, Any]]:
    params = {"namespace": namespace} if namespace else {}
    response = httpx.get(
        f"{gateway.root}/admin/v1/records",
        params=params,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def usage_of(gateway: Gateway, key: str = "team/team") -> dict[str, Any]:
    response = httpx.get(
        f"{gateway.root}/admin/v1/budgets/{key}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def test_chat_completion_is_billed_exactly(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    reply = client(gateway, **{"X-Project": "apollo", "X-User-Id": "ada"}).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES
    )
    assert reply.usage is not None and reply.usage.prompt_tokens == 7
    assert reply.choices[0].message.content
    (row,) = records(gateway)
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost_micros"]) == (
        7,
        12,
        COST_MICROS,
    )
    assert (row["project"], row["user_id"], row["namespace"], row["key_name"]) == (
        "apollo",
        "ada",
        "team",
        "default",
    )
    assert row["budgets"] == ["team/team"] and row["status"] == 200
    assert not row["estimated"] and not row["unpriced"] and not row["stream"]
    monthly = usage_of(gateway)["limits"][0]
    assert monthly["spentMicros"] == COST_MICROS and monthly["reservedTokens"] == 0


def test_stream_without_usage_requested_hides_the_usage_chunk(
    make_gateway: GatewayFactory,
) -> None:
    gateway = make_gateway()
    chunks = list(
        client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES, stream=True)
    )
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)  # no usage-only chunk reached the client
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(text.split()) == 12
    (row,) = records(gateway)
    assert row["stream"] and not row["estimated"]
    assert (row["completion_tokens"], row["cost_micros"]) == (12, COST_MICROS)
    assert row["ttft_ms"] is not None and row["ttft_ms"] <= row["latency_ms"]


def test_stream_with_usage_requested_passes_it_through(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    chunks = list(
        client(gateway).chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    final = chunks[-1]
    assert final.usage is not None and final.usage.completion_tokens == 12
    assert records(gateway)[0]["cost_micros"] == COST_MICROS


def test_cached_tokens_are_priced_at_the_cached_rate(
    make_gateway: GatewayFactory, fake: Any
) -> None:
    from tests.gateway.harness import route_manifest

    extra = route_manifest(
        "cached-model", fake.url, pricing='{input: "2", cachedInput: "0.5", output: "8"}'
    )
    gateway = make_gateway(extra=extra)
    client(gateway).chat.completions.create(
        model="cached-model", messages=MESSAGES, extra_body={"fake": {"cached_tokens": 4}}
    )
    row = records(gateway)[0]
    # 3 uncached * 2 + 4 cached * 0.5 + 12 * 8 = 6 + 2 + 96
    assert (row["cached_tokens"], row["cost_micros"]) == (4, 104)


def test_embeddings_and_models(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    sdk = client(gateway)
    result = sdk.embeddings.create(model="text-embedding-3-small", input=["one two", "three"])
    assert len(result.data) == 2 and result.usage.prompt_tokens == 3
    models = sorted(m.id for m in sdk.models.list())
    assert models == ["gpt-4.1", "text-embedding-3-small"]
    row = records(gateway)[0]
    assert row["endpoint"] == "embeddings" and row["cost_micros"] == 1  # 3 * 0.02, rounded up


def test_unknown_or_missing_key_is_401_openai_shaped(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, key="sk-wrong").chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    assert caught.value.code == "invalid_api_key"
    response = httpx.post(f"{gateway.url}/chat/completions", json={"model": "gpt-4.1"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_bad_requests_get_clear_4xx(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    auth = {"Authorization": f"Bearer {TEAM_KEY}", "Content-Type": "application/json"}
    url = f"{gateway.url}/chat/completions"
    cases = [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, None),
        (b'{"model": "gpt-4.1", "messages": []}', 400, None),
        (
            b'{"model": "gpt-4.1", "messages": [{"role":"user","content":"x"}], "max_tokens": -1}',
            400,
            None,
        ),
        (
            b'{"model": "gpt-4.1", "messages": [{"role":"user","content":"x"}], "stream": "yes"}',
            400,
            None,
        ),
        (
            b'{"model": "no-such-model", "messages": [{"role":"user","content":"x"}]}',
            404,
            "model_not_found",
        ),
        (
            b'{"model": "gpt-4.1", "messages": "' + b"x" * (5 * 1024 * 1024) + b'"}',
            413,
            "request_too_large",
        ),
    ]
    for body, status, code in cases:
        response = httpx.post(url, content=body, headers=auth)
        assert response.status_code == status, (body[:60], response.text)
        error = response.json()["error"]
        assert error["message"] and "Traceback" not in response.text
        if code:
            assert error["code"] == code
    assert records(gateway) == []  # nothing was billed


def test_namespace_comes_from_the_key_never_from_headers(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    client(gateway, key=OTHER_KEY, **{"X-Namespace": "team"}).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES
    )
    assert records(gateway, "team") == []
    assert records(gateway, "other")[0]["namespace"] == "other"


def test_budget_exceeded_is_429_naming_budget_limit_and_reset(
    make_gateway: GatewayFactory,
) -> None:
    # Room for one request: the reservation is prompt estimate + max_tokens (20) at $2/$8.
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.00025"}
        """
    )
    sdk = client(gateway)
    sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=20)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=20)
    error = caught.value
    assert error.code == "budget_exceeded"
    assert "TokenBudget team/team" in error.message and "Daily limit" in error.message
    assert "resets at" in error.message
    retry_after = int(error.response.headers["retry-after"])
    assert 0 < retry_after <= 86_400
    rows = records(gateway)
    assert [r["status"] for r in rows] == [429, 200]
    assert rows[0]["cost_micros"] == 0 and rows[0]["error_code"] == "budget_exceeded"
    usage = usage_of(gateway)
    assert usage["state"] == "Exceeded" and usage["limits"][0]["refused"] == 1
    assert [c["threshold"] for c in usage["thresholdsCrossed"]] == [100]  # 44 % spent, blocked


def test_near_the_limit_the_exact_token_count_decides(make_gateway: GatewayFactory) -> None:
    # The byte bound (29 * 2 + 20 * 8 = 218 micros) does not fit in 200; the tokenizer's count
    # (11 * 2 + 160 = 182) does, so the request is admitted.
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.0002"}
        """
    )
    client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=20)
    assert records(gateway)[0]["status"] == 200


def test_alert_only_lets_requests_through(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway(
        budget_spec="""\
        limits:
          - {period: Daily, amount: "0.0001"}
        onExceeded: {action: AlertOnly}
        """
    )
    sdk = client(gateway)
    for _ in range(3):
        sdk.chat.completions.create(model="gpt-4.1", messages=MESSAGES, max_tokens=20)
    usage = usage_of(gateway)
    assert usage["state"] == "Exceeded" and usage["percentUsed"] > 100
    crossed = [c["threshold"] for c in usage["thresholdsCrossed"]]
    assert crossed == [50, 75, 90, 100]  # each once, although exceeded three times


def test_scoped_budget_applies_only_to_its_project(make_gateway: GatewayFactory) -> None:
    from tests.gateway.harness import budget_manifest

    scoped = budget_manifest(
        "team",
        "apollo",
        """\
        scope: {tags: {project: apollo}}
        limits:
          - {period: Daily, tokens: 30}
        """,
    )
    gateway = make_gateway(extra=scoped)
    client(gateway, **{"X-Project": "apollo"}).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, max_tokens=12
    )
    with pytest.raises(openai.RateLimitError, match="TokenBudget team/apollo"):
        client(gateway, **{"X-Project": "apollo"}).chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, max_tokens=12
        )
    # Another project of the same namespace is not held by that budget.
    client(gateway, **{"X-Project": "zeus"}).chat.completions.create(
        model="gpt-4.1", messages=MESSAGES, max_tokens=12
    )
    assert usage_of(gateway, "team/apollo")["limits"][0]["spentTokens"] == 19


def test_upstream_errors_are_mapped_openai_shaped(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    with pytest.raises(openai.InternalServerError) as caught:
        client(gateway).chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, extra_body={"fake": {"status": 500}}
        )
    # the gateway's own error (the provider's text is logged, redacted, never relayed)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_error"
    assert "fake upstream failure" not in caught.value.response.text
    row = records(gateway)[0]
    assert (row["status"], row["error_code"], row["cost_micros"]) == (502, "upstream_error", 0)
    assert usage_of(gateway)["limits"][0]["reservedTokens"] == 0  # released


def test_unreachable_upstream_is_502_and_timeout_504(
    make_gateway: GatewayFactory, fake: Any
) -> None:
    from tests.gateway.harness import free_port, route_manifest

    dead = f"http://127.0.0.1:{free_port()}/v1"
    extra = (
        route_manifest("dead-model", dead)
        + "---\n"
        + route_manifest("slow-model", fake.url, extra="      timeout: 200ms\n")
    )
    gateway = make_gateway(extra=extra)
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway).chat.completions.create(model="dead-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.code == "upstream_unreachable"
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway).chat.completions.create(
            model="slow-model", messages=MESSAGES, extra_body={"fake": {"delay_ms": 2000}}
        )
    assert caught.value.status_code == 504 and time.monotonic() - started < 1.5


def test_cut_stream_is_billed_from_an_estimate(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    sdk = client(gateway)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in sdk.chat.completions.create(
            model="gpt-4.1", messages=MESSAGES, stream=True, extra_body={"fake": {"cut_after": 3}}
        ):
            received.append(chunk)
    assert len(received) == 3
    deadline = time.monotonic() + 5
    while not records(gateway) and time.monotonic() < deadline:
        time.sleep(0.05)
    row = records(gateway)[0]
    assert row["estimated"] and row["error_code"] == "upstream_stream_cut"
    assert row["completion_tokens"] == gateway.services.tokens.count_text("Budgets keep every")
    assert row["prompt_tokens"] > 0 and row["cost_micros"] > 0


def test_client_disconnect_mid_stream_is_billed_estimated(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    with httpx.stream(
        "POST",
        f"{gateway.url}/chat/completions",
        headers={"Authorization": f"Bearer {TEAM_KEY}"},
        json={"model": "gpt-4.1", "messages": MESSAGES, "stream": True},
    ) as response:
        first = next(response.iter_lines())
        assert first.startswith("data: ")
    deadline = time.monotonic() + 5
    while not records(gateway) and time.monotonic() < deadline:
        time.sleep(0.05)
    row = records(gateway)[0]
    assert row["cost_micros"] > 0 and row["completion_tokens"] >= 1
    assert usage_of(gateway)["limits"][0]["reservedTokens"] == 0


def test_unpriced_model_is_served_and_flagged(make_gateway: GatewayFactory, fake: Any) -> None:
    from tests.gateway.harness import route_manifest

    extra = route_manifest("my-private-llm", fake.url).replace(
        '      pricing: {input: "2", output: "8"}\n', ""
    )
    gateway = make_gateway(extra=extra)
    client(gateway).chat.completions.create(model="my-private-llm", messages=MESSAGES)
    row = records(gateway)[0]
    assert row["unpriced"] and row["cost_micros"] == 0 and row["completion_tokens"] == 12
    metrics = httpx.get(gateway.metrics_url).text
    assert 'llmbudget_unpriced_requests_total{model="my-private-llm",namespace="team"} 1.0' in (
        metrics
    )


def test_metrics_health_and_readiness(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    client(gateway).chat.completions.create(model="gpt-4.1", messages=MESSAGES)
    text = httpx.get(gateway.metrics_url).text
    for line in (
        'llmbudget_requests_total{model="gpt-4.1",namespace="team",status="200"} 1.0',
        'llmbudget_tokens_total{model="gpt-4.1",namespace="team",type="prompt"} 7.0',
        'llmbudget_tokens_total{model="gpt-4.1",namespace="team",type="completion"} 12.0',
        'llmbudget_budget_limit_usd{budget="team",namespace="team",period="Monthly"} 10.0',
        'llmbudget_budget_spent_usd{budget="team",namespace="team",period="Monthly"} 0.00011',
        'llmbudget_budget_tokens_total{budget="team",model="gpt-4.1",namespace="team",'
        'type="completion"} 12.0',
        "llmbudget_ledger_queue_depth",
        "llmbudget_request_duration_seconds_bucket",
    ):
        assert line in text, line
    assert "ada" not in text  # no user ids as labels
    assert httpx.get(f"{gateway.root}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.root}/readyz").json()
    assert ready["status"] == "ready" and len(ready["configRevision"]) == 16


def test_admin_api_requires_its_token(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    url = f"{gateway.root}/admin/v1/budgets"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {TEAM_KEY}"}).status_code == 401
    ok = httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert ok.status_code == 200
    assert {b["name"] for b in ok.json()["items"]} == {"team", "other"}
    assert ok.json()["items"][0]["breakdown"] == {"models": [], "projects": [], "users": []}
    light = httpx.get(f"{url}?breakdown=false", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert all(item["breakdown"] is None for item in light.json()["items"])
    assert (
        httpx.get(
            f"{gateway.root}/admin/v1/budgets/team/nope",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ).status_code
        == 404
    )


def test_unknown_path_is_openai_shaped_404(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    response = httpx.get(f"{gateway.url}/nothing-here")
    assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_url"
