"""A scripted provider on loopback that records what it served and what it would bill.

It speaks OpenAI chat completions (streamed or not, DeepSeek-style `reasoning_content` deltas
for reasoning tokens), embeddings and the Anthropic Messages API (streamed or not, with cache
reads and writes). Token counts use the real tokenizer (o200k_base): prompt tokens by OpenAI's
documented rule (3 per message, 3 to prime the reply), completion tokens of the text generated.
A request is scripted by its `fake` object (the gateway forwards it in tests):

  "words": 12             reply length in words (capped by max_tokens)
  "reasoning": 5          OpenAI: reasoning words streamed/billed before the answer
  "cached": 4             OpenAI: cached prompt tokens (capped by the prompt)
  "cache_read": 100, "cache_write": 20    Anthropic: cache tokens (parts of the prompt: capped
                          by it; input_tokens is the rest, as Anthropic reports)
  "status": 500           answer this status (with "error_text" as the message)
  "fail_first": 1, "key": "k"    with "status": only the first N calls scripted with "k"
  "retry_after": 1        with "status": a Retry-After header
  "fault": "reset"        streams: drop the connection after "cut_after" chunks; whole answers:
                          send the 200 and half the body, then drop it
  "fault": "timeout"      wait "delay_ms" (longer than the gateway's timeout) before answering
  "fault": "garbage"      a 200 with an HTML body
  "hold_ms": 500          streams: keep the connection open this long after the last event
  "chunk_ms": 20          streams: pause between chunks

`bills` holds what the provider bills for each request it served: the full usage of an answer
it generated (also when the gateway could not read it: a reset mid-body, a timeout, garbage),
the tokens generated up to the point a stream was cut or its reader went away, nothing for an
error status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import tiktoken
from aiohttp import web

from llmbudget_gateway.fake_upstream import WORDS
from llmbudget_gateway.tokens import prepare_offline_cache

HTML = b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"


@dataclass
class Bill:
    """What the provider served and bills for one request (tokens as the provider counts)."""

    api: str  # openai, embeddings, anthropic
    stream: bool
    prompt_tokens: int = 0  # every input token (cache reads and writes included)
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0  # reasoning included
    reasoning_tokens: int = 0
    complete: bool = False  # the whole answer was sent
    finished: bool = False  # the provider is done with it (the bill is final)
    body: dict[str, Any] = field(default_factory=dict)


class Tokenizer:
    def __init__(self, cache_dir: Any) -> None:
        import os

        prepare_offline_cache(cache_dir)
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(cache_dir))
        self.encoding = tiktoken.get_encoding("o200k_base")

    def count(self, text: str) -> int:
        return len(self.encoding.encode_ordinary(text)) if text else 0


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [str(p.get("text", "")) for p in content if isinstance(p, dict)]
    return []


class RecordingProvider:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tok = tokenizer
        self.bills: list[Bill] = []
        self.calls: dict[str, int] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""

    # -- counting ------------------------------------------------------------------------
    def openai_prompt(self, body: dict[str, Any]) -> int:
        total = 3
        for message in body.get("messages") or []:
            if isinstance(message, dict):
                total += 3 + sum(self.tok.count(t) for t in _texts(message.get("content")))
        return total

    def anthropic_input(self, body: dict[str, Any]) -> int:
        system = body.get("system")
        total = sum(self.tok.count(t) for t in _texts(system))
        for message in body.get("messages") or []:
            if isinstance(message, dict):
                total += 3 + sum(self.tok.count(t) for t in _texts(message.get("content")))
        return total

    def reply(self, body: dict[str, Any], script: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(reasoning pieces, answer pieces): as scripted, cut so that their tokens stay
        within max_tokens (reasoning counts in it, as at OpenAI)."""
        limit = int(body.get("max_completion_tokens") or body.get("max_tokens") or 10_000)
        thoughts = [" think"] * int(script.get("reasoning", 0))
        words = [(" " if i else "") + WORDS[i % len(WORDS)] for i in range(script.get("words", 12))]
        while thoughts and self.tok.count("".join(thoughts)) > limit:
            thoughts.pop()
        used = self.tok.count("".join(thoughts))
        while words and self.tok.count("".join(words)) + used > limit:
            words.pop()
        return thoughts, words

    # -- scripting -----------------------------------------------------------------------
    def _failure(self, script: dict[str, Any]) -> web.Response | None:
        status = script.get("status")
        if not status:
            return None
        if script.get("fail_first") is not None:
            key = str(script.get("key", ""))
            self.calls[key] = self.calls.get(key, 0) + 1
            if self.calls[key] > int(script["fail_first"]):
                return None
        text = str(script.get("error_text") or f"scripted failure {status}")
        body = {"error": {"message": text, "type": "server_error", "code": f"fake_{status}"}}
        headers = {"Retry-After": str(script["retry_after"])} if "retry_after" in script else {}
        return web.json_response(body, status=int(status), headers=headers)

    async def _whole(
        self, request: web.Request, bill: Bill, answer: dict[str, Any], script: dict[str, Any]
    ) -> web.StreamResponse:
        fault = script.get("fault")
        self.bills.append(bill)  # generated: billed however it is delivered
        bill.finished = True
        if fault == "garbage":
            return web.Response(body=HTML, content_type="text/html")
        raw = json.dumps(answer).encode()
        if fault == "reset":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = len(raw)
            await response.prepare(request)
            await response.write(raw[: len(raw) // 2])
            assert request.transport is not None
            request.transport.close()
            return response
        bill.complete = True
        return web.Response(body=raw, content_type="application/json")

    async def _events(
        self,
        request: web.Request,
        bill: Bill,
        events: list[tuple[bytes, int, int]],
        script: dict[str, Any],
    ) -> web.StreamResponse:
        """Send SSE `events` (bytes, completion tokens so far, reasoning so far); the bill
        grows with every event that was written."""
        self.bills.append(bill)
        if script.get("fault") == "garbage":  # generated, but what arrives is not a stream
            bill.completion_tokens, bill.reasoning_tokens = events[-1][1], events[-1][2]
            bill.finished = True
            return web.Response(body=HTML, content_type="text/html")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        cut_after = int(script.get("cut_after", 0)) if script.get("fault") == "reset" else 0
        pause = int(script.get("chunk_ms", 0)) / 1000
        try:
            await response.prepare(request)
            for index, (event, completion, reasoning) in enumerate(events):
                if cut_after and index >= cut_after:
                    assert request.transport is not None
                    request.transport.close()
                    return response
                await response.write(event)
                bill.completion_tokens, bill.reasoning_tokens = completion, reasoning
                if pause:
                    await asyncio.sleep(pause)
            bill.complete = True
            if script.get("hold_ms"):
                await asyncio.sleep(int(script["hold_ms"]) / 1000)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass  # the reader went away: billed for what was generated
        finally:
            bill.finished = True
        return response

    # -- OpenAI --------------------------------------------------------------------------
    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        script = body.get("fake") if isinstance(body.get("fake"), dict) else {}
        if (failure := self._failure(script)) is not None:
            return failure
        if script.get("fault") == "timeout":
            await asyncio.sleep(int(script.get("delay_ms", 3000)) / 1000)
        prompt = self.openai_prompt(body)
        thoughts, words = self.reply(body, script)
        text = "".join(words)
        reasoning = self.tok.count("".join(thoughts))
        completion = self.tok.count(text) + reasoning
        cached = min(int(script.get("cached", 0)), prompt)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        bill = Bill("openai", bool(body.get("stream")), prompt, cached, body=body)
        if not body.get("stream"):
            bill.completion_tokens, bill.reasoning_tokens = completion, reasoning
            message = {"role": "assistant", "content": text}
            answer = {
                "id": "chatcmpl-rec",
                "object": "chat.completion",
                "created": 1,
                "model": body.get("model"),
                "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
            return await self._whole(request, bill, answer, script)
        base = {
            "id": "chatcmpl-rec",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body.get("model"),
        }
        include = (body.get("stream_options") or {}).get("include_usage") is True

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            event = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            if include:
                event["usage"] = None
            return b"data: " + json.dumps(event).encode() + b"\n\n"

        events: list[tuple[bytes, int, int]] = []
        done_reasoning = ""
        for piece in thoughts:
            done_reasoning += piece
            n = self.tok.count(done_reasoning)
            events.append((chunk({"reasoning_content": piece}), n, n))
        done_text = ""
        for piece in words:
            done_text += piece
            events.append(
                (chunk({"content": piece}), self.tok.count(done_text) + reasoning, reasoning)
            )
        events.append((chunk({}, "stop"), completion, reasoning))
        if include:
            final = {**base, "choices": [], "usage": usage}
            events.append((b"data: " + json.dumps(final).encode() + b"\n\n", completion, reasoning))
        events.append((b"data: [DONE]\n\n", completion, reasoning))
        return await self._events(request, bill, events, script)

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        script = body.get("fake") if isinstance(body.get("fake"), dict) else {}
        if (failure := self._failure(script)) is not None:
            return failure
        items = body["input"] if isinstance(body.get("input"), list) else [body.get("input")]
        tokens = sum(self.tok.count(str(item)) for item in items)
        bill = Bill("embeddings", False, tokens, body=body)
        answer = {
            "object": "list",
            "model": body.get("model"),
            "data": [
                {"object": "embedding", "index": i, "embedding": [0.1]} for i in range(len(items))
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return await self._whole(request, bill, answer, script)

    # -- Anthropic -----------------------------------------------------------------------
    async def messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        script = body.get("fake") if isinstance(body.get("fake"), dict) else {}
        if (failure := self._failure(script)) is not None:
            return failure
        if script.get("fault") == "timeout":
            await asyncio.sleep(int(script.get("delay_ms", 3000)) / 1000)
        _, words = self.reply(body, script)
        text = "".join(words)
        total = self.anthropic_input(body)  # cache reads and writes are parts of the prompt
        read = min(int(script.get("cache_read", 0)), total)
        write = min(int(script.get("cache_write", 0)), total - read)
        plain = total - read - write
        usage = {
            "input_tokens": plain,
            "cache_read_input_tokens": read,
            "cache_creation_input_tokens": write,
        }
        output = self.tok.count(text)
        bill = Bill(
            "anthropic", bool(body.get("stream")), plain + read + write, read, write, body=body
        )
        message = {
            "id": "msg_rec",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
        }
        if not body.get("stream"):
            bill.completion_tokens = output
            answer = {
                **message,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "usage": {**usage, "output_tokens": output},
            }
            return await self._whole(request, bill, answer, script)

        def event(kind: str, data: dict[str, Any]) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        start = {"message": {**message, "content": [], "usage": {**usage, "output_tokens": 1}}}
        events = [(event("message_start", start), 1, 0)]
        events.append(
            (
                event(
                    "content_block_start",
                    {"index": 0, "content_block": {"type": "text", "text": ""}},
                ),
                1,
                0,
            )
        )
        done = ""
        for piece in words:
            done += piece
            delta = {"index": 0, "delta": {"type": "text_delta", "text": piece}}
            events.append((event("content_block_delta", delta), self.tok.count(done), 0))
        events.append((event("content_block_stop", {"index": 0}), output, 0))
        events.append(
            (
                event(
                    "message_delta",
                    {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": output}},
                ),
                output,
                0,
            )
        )
        events.append((event("message_stop", {}), output, 0))
        return await self._events(request, bill, events, script)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/embeddings", self.embeddings)
        app.router.add_post("/v1/messages", self.messages)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def stop(self) -> None:
        if self.runner is not None:
            with contextlib.suppress(Exception):
                await self.runner.cleanup()
