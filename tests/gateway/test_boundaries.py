"""Issue 14, isolation and errors: the response cache, provider errors, /metrics, bad input
and the HTTP layer."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest
from aiohttp import web

from tests.gateway.conftest import OTHER_KEY, TEAM_KEY, GatewayFactory
from tests.gateway.harness import LoopThread
from tests.gateway.recording_provider import RecordingProvider
from tests.gateway.test_pricing_paths import backend, claude_route, modelroute, sdk
from tests.gateway.test_proxy_openai import client, records

PROVIDER_KEY = "sk-ant-api03-Provider-Secret-Do-Not-Leak-0123456789"


def provider_secret() -> str:
    return (
        "apiVersion: v1\nkind: Secret\n"
        "metadata: {name: provider, namespace: llmbudget-system}\n"
        f"stringData: {{apiKey: {PROVIDER_KEY}}}\n---\n"
    )


def keyed(url: str, provider: str = "OpenAI") -> str:
    return provider_secret() + modelroute(
        "keyed",
        "keyed",
        backend(
            "main",
            url,
            "2",
            provider=provider,
            extra=", credentialSecretRef: {name: provider, key: apiKey}",
        ),
    )


def test_the_response_cache_is_per_namespace(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    route = modelroute("c", "c", backend("main", recorder.url, "2"), extra="  cache: {ttl: 5m}\n")
    gateway = make_gateway(extra=route)
    body: Any = [{"role": "user", "content": "my secret launch plan"}]
    first = client(gateway).chat.completions.with_raw_response.create(model="c", messages=body)
    again = client(gateway).chat.completions.with_raw_response.create(model="c", messages=body)
    other = client(gateway, key=OTHER_KEY).chat.completions.with_raw_response.create(
        model="c", messages=body
    )
    assert first.headers["x-llmbudget-cache"] == "miss"
    assert again.headers["x-llmbudget-cache"] == "hit"  # the same namespace still hits
    assert other.headers["x-llmbudget-cache"] == "miss"  # B learns nothing about A's prompt
    assert len(recorder.bills) == 2
    assert records(gateway, "other")[0]["cost_micros"] > 0


@pytest.mark.parametrize("status", [401, 403])
def test_a_provider_auth_failure_is_a_gateway_error_without_the_key(
    make_gateway: GatewayFactory,
    recorder: RecordingProvider,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    gateway = make_gateway(extra=keyed(recorder.url))
    caplog.set_level(logging.DEBUG)
    text = f"Incorrect API key provided: {PROVIDER_KEY}. Find your key at example.com."
    with pytest.raises(openai.APIStatusError) as failed:
        client(gateway).chat.completions.create(
            model="keyed",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"fake": {"status": status, "error_text": text}},
        )
    assert failed.value.status_code == 502  # not a 401: the client's key is fine
    assert failed.value.code == "upstream_auth_failed"
    assert PROVIDER_KEY not in failed.value.response.text
    assert PROVIDER_KEY[8:30] not in failed.value.response.text
    assert PROVIDER_KEY not in caplog.text and "[redacted]" in caplog.text
    assert records(gateway)[0]["error_code"] == "upstream_auth_failed"


def test_provider_error_text_is_never_relayed_as_is(
    make_gateway: GatewayFactory, recorder: RecordingProvider
) -> None:
    gateway = make_gateway(extra=keyed(recorder.url, "Anthropic"))
    text = f"internal failure, request signed with key {PROVIDER_KEY}"
    for status in (500, 400):
        with pytest.raises(anthropic.APIStatusError) as failed:
            anthropic.Anthropic(
                base_url=gateway.root, api_key=TEAM_KEY, max_retries=0
            ).messages.create(
                model="keyed",
                max_tokens=5,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={"fake": {"status": status, "error_text": text}},
            )
        assert PROVIDER_KEY not in failed.value.response.text
        assert failed.value.status_code == (502 if status == 500 else 400)


def test_metrics_are_not_served_on_the_api_port(make_gateway: GatewayFactory) -> None:
    gateway = make_gateway()
    client(gateway).models.list()
    api = httpx.get(f"{gateway.root}/metrics", headers={"Authorization": f"Bearer {TEAM_KEY}"})
    assert api.status_code == 404 and api.json()["error"]["code"] == "unknown_url"
    scraped = httpx.get(gateway.metrics_url)
    assert scraped.status_code == 200 and "llmbudget_budget_limit_usd" in scraped.text


@pytest.mark.parametrize("stream", [False, True])
def test_a_non_json_200_is_not_relayed(
    make_gateway: GatewayFactory, recorder: RecordingProvider, stream: bool
) -> None:
    gateway = make_gateway(extra=modelroute("m", "m", backend("main", recorder.url, "2")))
    response = httpx.post(
        f"{gateway.url}/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": stream,
              "fake": {"fault": "garbage"}},
        headers={"Authorization": f"Bearer {TEAM_KEY}"},
    )  # fmt: skip
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "upstream_invalid_response"
    assert "<html>" not in response.text
    (row,) = records(gateway)
    assert row["estimated"] and row["cost_micros"] > 0  # the provider answered: never $0


CHAT_TO_ANTHROPIC_400 = [
    {"stop": 7},
    {"messages": [{"role": "assistant", "content": "x", "tool_calls": "call"}]},
    {"messages": [{"role": "assistant", "content": "x", "tool_calls": [1, "a"]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "http://i"}]}]},
    {"messages": [{"role": "tool", "tool_call_id": "c", "content": 42}]},
    {"tools": "all"},
    {"anthropic": "thinking"},
]


@pytest.mark.parametrize("patch", CHAT_TO_ANTHROPIC_400)
def test_untranslatable_chat_requests_are_400s(
    make_gateway: GatewayFactory,
    recorder: RecordingProvider,
    caplog: pytest.LogCaptureFixture,
    patch: dict[str, Any],
) -> None:
    gateway = make_gateway(extra=claude_route(recorder.url))
    caplog.set_level(logging.ERROR, logger="llmbudget")
    body = {"model": "claude", "messages": [{"role": "user", "content": "x"}], **patch}
    response = httpx.post(
        f"{gateway.url}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {TEAM_KEY}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert not caplog.records, caplog.text  # no traceback logged
    assert recorder.bills == []


@pytest.mark.parametrize("metadata", ["user-1", ["user-1"], {"user_id": 5}])
def test_messages_with_a_malformed_metadata_are_400s(
    make_gateway: GatewayFactory,
    recorder: RecordingProvider,
    caplog: pytest.LogCaptureFixture,
    metadata: Any,
) -> None:
    gateway = make_gateway(extra=claude_route(recorder.url))
    caplog.set_level(logging.ERROR, logger="llmbudget")
    with pytest.raises(anthropic.BadRequestError):
        sdk(gateway).messages.create(
            model="claude",
            max_tokens=5,
            messages=[{"role": "user", "content": "x"}],
            metadata=metadata,
        )
    assert not caplog.records, caplog.text


def test_a_disconnect_during_the_upload_is_quiet(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = make_gateway()
    caplog.set_level(logging.WARNING, logger="llmbudget")
    for path in ("/v1/chat/completions", "/v1/messages", "/v1/embeddings"):
        with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEAM_KEY}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                '{"model": "gpt-4.1", "messages": ['.encode()
            )
            time.sleep(0.1)
    time.sleep(0.5)
    assert not caplog.records, caplog.text
    assert httpx.get(f"{gateway.root}/healthz").status_code == 200


def _raw(port: int, request: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"GET /v1/models?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n", 431,
         "headers_too_large"),
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i
         for i in range(2000)) + b"\r\n", 431, "headers_too_large"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, "invalid_http_request"),
    ],
)  # fmt: skip
def test_the_http_layer_has_limits_and_answers_json(
    make_gateway: GatewayFactory, request_bytes: bytes, status: int, code: str
) -> None:
    gateway = make_gateway()
    answered, body = _raw(gateway.port, request_bytes)
    assert answered == status
    assert body.startswith(b"{") and code.encode() in body
    assert httpx.get(f"{gateway.root}/healthz").status_code == 200


ODD_ANSWERS = {
    # readable: details that are not objects count as none
    "openai, odd details": ("OpenAI", {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11,
                  "prompt_tokens_details": "unavailable"}}, 200),
    # unreadable: JSON, but its content blocks are not objects (nothing to translate)
    "anthropic, blocks not objects": ("Anthropic", {
        "id": "msg", "type": "message", "role": "assistant", "model": "m",
        "content": ["hello", 3], "stop_reason": "end_turn",
        "usage": {"input_tokens": 9, "output_tokens": 2}}, 502),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ODD_ANSWERS))
def test_a_200_of_an_unexpected_shape_is_never_a_500_or_free(
    make_gateway: GatewayFactory, name: str
) -> None:
    provider, answer, status = ODD_ANSWERS[name]
    served: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        served.append(1)
        return web.json_response(answer)

    loop = LoopThread()

    async def start() -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        app.router.add_post("/v1/messages", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    runner, port = loop.run(start())
    try:
        url = f"http://127.0.0.1:{port}" + ("/v1" if provider == "OpenAI" else "")
        route = modelroute("odd", "odd", backend("main", url, "2", provider=provider))
        gateway = make_gateway(extra=route)
        response = httpx.post(
            f"{gateway.url}/chat/completions",
            headers={"Authorization": f"Bearer {TEAM_KEY}"},
            json={"model": "odd", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        assert served == [1]  # the provider served (and bills) it once: no retry
        (row,) = records(gateway)
        assert row["cost_micros"] > 0  # never $0 for what the provider bills
        assert row["estimated"] is (status != 200)
    finally:
        loop.run(runner.cleanup())
        loop.stop()
