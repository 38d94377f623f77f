"""A small fake OpenAI-compatible provider, for the standalone demo, tests and benchmarks.

Deterministic: the reply is words of a fixed text, as many as `max_tokens` allows (default 12),
each word one completion token; prompt tokens are the words of all message contents plus 3 per
message. Streams carry usage only when `stream_options.include_usage` is true, like OpenAI.
Scripted behaviour for tests, by a `fake` object in the request body (forwarded to providers
only in fake-upstream mode and tests, Settings.forward_fake_scripts; with the openai SDK:
`extra_body={"fake": {...}}`):
  "status": 500          answer with this HTTP status and an OpenAI-shaped error
  "delay_ms": 200        wait before answering
  "cut_after": 3         streams: drop the connection after this many content chunks
  "cached_tokens": 5     report this many cached prompt tokens
  "fail_first": 2, "key": "k"   with "status": fail only the first 2 calls scripted with "k"
  "retry_after": 1       with "status": send this Retry-After header
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

WORDS = (
    "Budgets",
    "keep",
    "every",
    "team",
    "honest",
    "about",
    "what",
    "their",
    "language",
    "models",
    "really",
    "cost",
    "them",
    "each",
    "month",
    "and",
    "the",
    "gateway",
    "counts",
    "every",
    "single",
    "token",
    "on",
    "the",
    "way",
)
DEFAULT_REPLY_TOKENS = 12
COUNTERS = web.AppKey("counters", dict[str, int])


def prompt_tokens(body: dict[str, Any]) -> int:
    total = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            total += sum(
                len(str(p.get("text", "")).split()) for p in content if isinstance(p, dict)
            )
        total += 3
    return total


def reply_words(body: dict[str, Any]) -> list[str]:
    limit = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_REPLY_TOKENS
    count = max(1, min(int(limit), DEFAULT_REPLY_TOKENS))
    return [WORDS[i % len(WORDS)] for i in range(count)]


def usage(body: dict[str, Any], completion: int, cached: int) -> dict[str, Any]:
    prompt = prompt_tokens(body)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": min(cached, prompt)},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def script(body: dict[str, Any]) -> dict[str, int]:
    scripted = body.get("fake")
    return scripted if isinstance(scripted, dict) else {}


async def _scripted(request: web.Request, body: dict[str, Any]) -> web.Response | None:
    delay = script(body).get("delay_ms")
    if delay:
        await asyncio.sleep(int(delay) / 1000)
    status = script(body).get("status")
    fail_first = script(body).get("fail_first")
    if status and fail_first is not None:  # fail only the first N calls with this "key"
        counters = request.app[COUNTERS]
        key = str(script(body).get("key", ""))
        counters[key] = counters.get(key, 0) + 1
        if counters[key] > int(fail_first):
            status = None
    if status:
        error = {
            "error": {
                "message": f"fake upstream failure {status}",
                "type": "server_error",
                "param": None,
                "code": f"fake_{status}",
            }
        }
        headers = (
            {"Retry-After": str(script(body)["retry_after"])}
            if ("retry_after" in script(body))
            else None
        )
        return web.json_response(error, status=int(status), headers=headers)
    return None


async def chat_completions(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    scripted = await _scripted(request, body)
    if scripted is not None:
        return scripted
    words = reply_words(body)
    cached = int(script(body).get("cached_tokens", 0))
    created = int(time.time())
    base = {
        "id": "chatcmpl-fake",
        "created": created,
        "model": body.get("model", "fake"),
        "system_fingerprint": "fake",
    }
    if not body.get("stream"):
        return web.json_response(
            {
                **base,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": " ".join(words)},
                    }
                ],
                "usage": usage(body, len(words), cached),
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    include_usage = (body.get("stream_options") or {}).get("include_usage") is True
    cut_after = int(script(body).get("cut_after", 0))
    chunk = {**base, "object": "chat.completion.chunk"}
    for index, word in enumerate(words):
        if cut_after and index >= cut_after:
            assert request.transport is not None
            request.transport.close()  # the provider drops the connection mid-stream
            return response
        delta = {"content": (" " if index else "") + word}
        if index == 0:
            delta["role"] = "assistant"
        event = {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        if include_usage:
            event["usage"] = None
        await response.write(b"data: " + json.dumps(event).encode() + b"\n\n")
    final = {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    if include_usage:
        final["usage"] = None
    await response.write(b"data: " + json.dumps(final).encode() + b"\n\n")
    if include_usage:
        usage_chunk = {**chunk, "choices": [], "usage": usage(body, len(words), cached)}
        await response.write(b"data: " + json.dumps(usage_chunk).encode() + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def embeddings(request: web.Request) -> web.Response:
    body = await request.json()
    scripted = await _scripted(request, body)
    if scripted is not None:
        return scripted
    inputs = body.get("input")
    items = [inputs] if isinstance(inputs, str) else list(inputs or [])
    tokens = sum(len(str(item).split()) for item in items)
    return web.json_response(
        {
            "object": "list",
            "model": body.get("model"),
            "data": [
                {"object": "embedding", "index": i, "embedding": [0.0, 0.1, 0.2]}
                for i in range(len(items))
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def _anthropic_prompt_tokens(body: dict[str, Any]) -> int:
    system = body.get("system") or ""
    total = len(str(system).split())
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            total += len(content.split())
        else:
            total += sum(
                len(str(b.get("text", "")).split()) for b in content or [] if isinstance(b, dict)
            )
        total += 3
    return total


async def messages(request: web.Request) -> web.StreamResponse:
    """Anthropic Messages API: input_tokens exclude cache reads/writes, as Anthropic's do."""
    body = await request.json()
    if request.headers.get("anthropic-version") is None or not body.get("max_tokens"):
        error = {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "anthropic-version and max_tokens needed",
            },
        }
        return web.json_response(error, status=400)
    scripted = await _scripted(request, body)
    if scripted is not None:
        return scripted
    count = max(1, min(int(body["max_tokens"]), DEFAULT_REPLY_TOKENS))
    words = [WORDS[i % len(WORDS)] for i in range(count)]
    cache_read = int(script(body).get("cache_read", 0))
    cache_write = int(script(body).get("cache_write", 0))
    usage = {
        "input_tokens": _anthropic_prompt_tokens(body),
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
    }
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": body.get("model")}
    if not body.get("stream"):
        return web.json_response(
            {
                **message,
                "content": [{"type": "text", "text": " ".join(words)}],
                "stop_reason": "end_turn",
                "usage": {**usage, "output_tokens": len(words)},
            }
        )
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)

    async def event(kind: str, data: dict[str, Any]) -> None:
        await response.write(
            f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()
        )

    await event(
        "message_start",
        {"message": {**message, "content": [], "usage": {**usage, "output_tokens": 1}}},
    )
    await event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
    for index, word in enumerate(words):
        await event(
            "content_block_delta",
            {"index": 0, "delta": {"type": "text_delta", "text": (" " if index else "") + word}},
        )
    await event("content_block_stop", {"index": 0})
    await event(
        "message_delta",
        {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": len(words)}},
    )
    await event("message_stop", {})
    await response.write_eof()
    return response


def create_app() -> web.Application:
    app = web.Application()
    app[COUNTERS] = {}  # per-app state for "fail_first" scripts
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/messages", messages)
    return app


async def start(host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """Start the fake on a port (0: any free one); returns the runner and its base URL."""
    runner = web.AppRunner(create_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    assert server is not None and server.sockets  # type: ignore[attr-defined]
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return runner, f"http://{host}:{bound}/v1"


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="fake OpenAI-compatible upstream")
    parser.add_argument("--port", type=int, default=9999)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()
