"""Anthropic backends behind the OpenAI API: translation, streaming, cache-aware pricing."""

from __future__ import annotations

from typing import Any

from llmbudget_gateway.anthropic_translation import (
    StreamTranslator,
    messages_url,
    to_anthropic_request,
    to_openai_response,
)
from tests.gateway.conftest import GatewayFactory
from tests.gateway.test_proxy_openai import client, records

PRICING = '{input: "3", cachedInput: "0.3", cacheWrite: "3.75", output: "15"}'


def claude_route(url: str) -> str:
    return (
        "apiVersion: llmbudget.io/v1alpha1\nkind: ModelRoute\n"
        "metadata: {name: claude, namespace: llmbudget-system}\nspec:\n"
        "  model: claude-sonnet-4.5\n  backends:\n"
        f'    - {{name: anthropic, provider: Anthropic, baseURL: "{url}", '
        f"model: claude-sonnet-4-5, pricing: {PRICING}}}\n"
    )


def test_request_translation() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"x": 1}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "stop": "END",
        "temperature": 0.2,
        "user": "ada",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    }
    request = to_anthropic_request(body, "claude-sonnet-4-5", 4096)
    assert request["system"] == "Be terse." and request["max_tokens"] == 4096
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    assert request["messages"][0]["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "AAA",
    }
    assert request["messages"][1]["content"][0] == {
        "type": "tool_use",
        "id": "c1",
        "name": "f",
        "input": {"x": 1},
    }
    assert request["messages"][2]["content"][0]["type"] == "tool_result"
    assert request["stop_sequences"] == ["END"] and request["metadata"] == {"user_id": "ada"}
    assert request["tools"][0]["input_schema"] == {"type": "object"}  # empty -> a valid schema
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("http://x/v1/") == "http://x/v1/messages"


def test_response_and_stream_translation() -> None:
    message: dict[str, Any] = {
        "id": "m",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "max_tokens",
        "usage": {"input_tokens": 5, "cache_read_input_tokens": 10, "output_tokens": 3},
    }
    reply = to_openai_response(message, "claude-sonnet-4.5")
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 3,
        "total_tokens": 18,
        "prompt_tokens_details": {"cached_tokens": 10},
    }
    translator = StreamTranslator("claude-sonnet-4.5", include_usage=True)
    chunks = translator.event(
        "message_start", {"message": {"id": "m", "usage": {"input_tokens": 5, "output_tokens": 1}}}
    )
    chunks += translator.event(
        "content_block_delta", {"delta": {"type": "text_delta", "text": "hi"}}
    )
    chunks += translator.event(
        "message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}
    )
    chunks += translator.event("message_stop", {})
    assert chunks[1]["choices"][0]["delta"] == {"content": "hi"}
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["usage"]["completion_tokens"] == 7  # cumulative output: overwritten


def test_openai_sdk_through_an_anthropic_backend(make_gateway: GatewayFactory, fake: Any) -> None:
    gateway = make_gateway(extra=claude_route(fake.url))
    messages = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "count my tokens please"},
    ]
    reply = client(gateway).chat.completions.create(
        model="claude-sonnet-4.5",
        messages=messages,  # type: ignore[arg-type]
        extra_body={"fake": {"cache_read": 100, "cache_write": 20}},
    )
    assert reply.choices[0].message.content and reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and reply.usage.prompt_tokens == 2 + 7 + 100 + 20
    row = records(gateway)[0]
    assert (row["provider"], row["routed_model"]) == ("Anthropic", "claude-sonnet-4-5")
    assert (row["cached_tokens"], row["cache_write_tokens"]) == (100, 20)
    # 9 input * 3 + 100 cache reads * 0.3 + 20 cache writes * 3.75 + 12 output * 15
    assert row["cost_micros"] == 27 + 30 + 75 + 180


def test_streaming_through_an_anthropic_backend(make_gateway: GatewayFactory, fake: Any) -> None:
    gateway = make_gateway(extra=claude_route(fake.url))
    chunks = list(
        client(gateway).chat.completions.create(
            model="claude-sonnet-4.5",
            messages=[{"role": "user", "content": "hello there"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    row = records(gateway)[0]
    assert row["stream"] and not row["estimated"] and row["completion_tokens"] == 12
    assert row["cost_micros"] == 5 * 3 + 12 * 15
