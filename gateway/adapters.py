"""The APIs the gateway speaks to providers, each as an `Adapter` of relay.py.

- `OpenAIChat`: OpenAI chat completions to an OpenAI-compatible backend. The body goes as the
  client sent it except the fields the gateway controls (`model`, `stream`,
  `stream_options.include_usage`, which it adds so that streams carry usage, and the usage
  chunk the client did not ask for is dropped again).
- `OpenAIEmbeddings`: embeddings, whole answers only.
- `ChatViaAnthropic`: OpenAI chat served by an Anthropic backend (anthropic_translation.py).
- `Messages`: the Anthropic Messages API as it is (messages_endpoint.py validates the body).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from llmbudget_gateway.anthropic_translation import (
    ANTHROPIC_VERSION,
    StreamTranslator,
    messages_url,
    to_anthropic_request,
    to_openai_response,
)
from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.errors import error_body
from llmbudget_gateway.relay import ProviderStreamError, SseEvent, StreamMeter, UpstreamRequest
from llmbudget_gateway.tokens import TokenCounter
from llmbudget_gateway.usage import Usage

if TYPE_CHECKING:
    from llmbudget_gateway.metering import Exchange

_NULL_USAGE = (b'"usage":null', b'"usage": null')


def _base_url(exchange: Exchange, backend: Backend) -> str:
    return exchange.services.settings.upstream_override or backend.base_url


def _openai_request(
    exchange: Exchange, backend: Backend, path: str, payload: dict[str, Any]
) -> UpstreamRequest:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    secrets: tuple[str, ...] = ()
    if backend.api_key is not None:
        secret = backend.api_key.get_secret_value()
        headers["Authorization"] = f"Bearer {secret}"
        secrets = (secret,)
    url = _base_url(exchange, backend).rstrip("/") + path
    return UpstreamRequest(url, headers, payload, secrets)


def _anthropic_request(
    exchange: Exchange, backend: Backend, payload: dict[str, Any]
) -> UpstreamRequest:
    headers = {
        "content-type": "application/json",
        "anthropic-version": ANTHROPIC_VERSION,
        "accept-encoding": "identity",
    }
    secrets: tuple[str, ...] = ()
    if backend.api_key is not None:
        secret = backend.api_key.get_secret_value()
        headers["x-api-key"] = secret
        secrets = (secret,)
    return UpstreamRequest(messages_url(_base_url(exchange, backend)), headers, payload, secrets)


def openai_text(answer: dict[str, Any]) -> str:
    """The output text of a chat completion (content and tool call arguments)."""
    parts: list[str] = []
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                parts += [str(function.get("name") or ""), str(function.get("arguments") or "")]
    return "".join(parts)


def anthropic_text(message: dict[str, Any]) -> str:
    parts: list[str] = []
    for block in message.get("content") or ():
        if isinstance(block, dict):
            if isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block.get("thinking"), str):
                parts.append(block["thinking"])
            elif block.get("type") == "tool_use":
                parts.append(
                    str(block.get("name") or "") + orjson.dumps(block.get("input")).decode()
                )
    return "".join(parts)


def openai_error_event(code: str, message: str) -> bytes:
    return b"data: " + error_body(message, "upstream_error", code) + b"\n\n"


def anthropic_error_event(code: str, message: str) -> bytes:
    body = {"type": "error", "error": {"type": "api_error", "message": f"{message} ({code})"}}
    return b"event: error\ndata: " + orjson.dumps(body) + b"\n\n"


@dataclass
class OpenAIChatMeter:
    tokens: TokenCounter
    drop_usage_chunk: bool
    done: bool = False
    started: bool = False
    usage: Usage | None = None
    payloads: list[bytes] = field(default_factory=list)

    def feed(self, event: SseEvent) -> list[bytes]:
        payload = event.data
        if payload == b"[DONE]":
            self.done = True
            return [event.raw]
        if not payload:
            return [event.raw]
        if b'"error"' in payload[:16]:
            chunk = orjson.loads(payload)
            if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                raise ProviderStreamError("error event")
        if b'"usage"' in payload and not any(n in payload for n in _NULL_USAGE):
            chunk = orjson.loads(payload)
            found = Usage.from_openai(chunk.get("usage")) if isinstance(chunk, dict) else None
            if found is not None:
                self.usage = found
            if self.drop_usage_chunk and isinstance(chunk, dict) and not chunk.get("choices"):
                return []  # the usage-only chunk the client did not ask for
        self.payloads.append(payload)
        self.started = True
        return [event.raw]

    def at_eof(self) -> list[bytes]:
        if self.usage is not None:  # a provider that sends usage but no [DONE]
            self.done = True
        return []

    def reported(self) -> Usage | None:
        return self.usage

    def texts(self) -> tuple[str, str]:
        """(answer text, reasoning text) relayed so far."""
        parts: list[str] = []
        thoughts: list[str] = []
        for payload in self.payloads:
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            for choice in (chunk.get("choices") if isinstance(chunk, dict) else None) or ():
                delta = (choice.get("delta") if isinstance(choice, dict) else None) or {}
                for key in ("content", "refusal"):
                    if isinstance(delta.get(key), str):
                        parts.append(delta[key])
                for key in ("reasoning_content", "reasoning"):
                    if isinstance(delta.get(key), str):
                        thoughts.append(delta[key])
                for call in delta.get("tool_calls") or ():
                    function = (call.get("function") if isinstance(call, dict) else None) or {}
                    parts.append(str(function.get("name") or ""))
                    parts.append(str(function.get("arguments") or ""))
        return "".join(parts), "".join(thoughts)

    def estimate(self, exchange: Exchange) -> Usage:
        text, thoughts = self.texts()
        reasoning = self.tokens.count_text(thoughts)
        return Usage(
            prompt_tokens=exchange.prompt_estimate(),
            completion_tokens=self.tokens.count_text(text) + reasoning,
            reasoning_tokens=reasoning,
        )

    def error_event(self, code: str, message: str) -> bytes:
        return openai_error_event(code, message)


@dataclass
class AnthropicMeter:
    """Anthropic Messages events: relayed as they are, or translated to OpenAI chunks."""

    tokens: TokenCounter
    translator: StreamTranslator | None = None  # None: relay as they are (/v1/messages)
    done: bool = False
    started: bool = False
    fields: dict[str, Any] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)

    def feed(self, event: SseEvent) -> list[bytes]:
        if not event.data:
            return [] if self.translator else [event.raw]
        data = orjson.loads(event.data)
        if not isinstance(data, dict):
            raise ValueError("event data is not an object")
        kind = event.name or str(data.get("type") or "")
        if kind == "error":
            raise ProviderStreamError(str((data.get("error") or {}).get("type") or "error"))
        if kind == "message_start":
            self.fields.update((data.get("message") or {}).get("usage") or {})
        elif kind == "message_delta":
            self.fields.update(data.get("usage") or {})  # cumulative: overwrite
        elif kind == "content_block_delta":
            self.started = True
            delta = data.get("delta") or {}
            for key in ("text", "partial_json", "thinking"):
                if isinstance(delta.get(key), str):
                    self.text.append(delta[key])
        elif kind == "message_stop":
            self.done = True
        if self.translator is None:
            return [event.raw]
        out = [b"data: " + orjson.dumps(c) + b"\n\n" for c in self.translator.event(kind, data)]
        if self.done:
            out.append(b"data: [DONE]\n\n")
        return out

    def at_eof(self) -> list[bytes]:
        return []

    def reported(self) -> Usage | None:
        return Usage.from_anthropic(self.fields) if self.fields else None

    def estimate(self, exchange: Exchange) -> Usage:
        counted = self.tokens.count_text("".join(self.text))
        reported = self.reported()
        if reported is None or reported.prompt_tokens == 0:
            return Usage(prompt_tokens=exchange.prompt_estimate(), completion_tokens=counted)
        # the input split message_start reported (cache reads and writes) is exact
        return Usage(
            prompt_tokens=reported.prompt_tokens,
            cached_tokens=reported.cached_tokens,
            cache_write_tokens=reported.cache_write_tokens,
            completion_tokens=max(counted, reported.completion_tokens),
        )

    def error_event(self, code: str, message: str) -> bytes:
        if self.translator is None:
            return anthropic_error_event(code, message)
        return openai_error_event(code, message)


class OpenAIChat:
    def request(
        self, exchange: Exchange, backend: Backend, body: dict[str, Any]
    ) -> UpstreamRequest:
        payload = {**body, "model": backend.model}
        if exchange.stream:
            options = body.get("stream_options")
            payload["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
        return _openai_request(exchange, backend, "/chat/completions", payload)

    def whole(
        self, exchange: Exchange, answer: dict[str, Any], raw: bytes
    ) -> tuple[bytes, Usage | None, str]:
        return raw, Usage.from_openai(answer.get("usage")), openai_text(answer)

    def meter(self, exchange: Exchange, body: dict[str, Any]) -> StreamMeter:
        options = body.get("stream_options")
        asked = isinstance(options, dict) and options.get("include_usage") is True
        return OpenAIChatMeter(exchange.services.tokens, drop_usage_chunk=not asked)


class OpenAIEmbeddings:
    def request(
        self, exchange: Exchange, backend: Backend, body: dict[str, Any]
    ) -> UpstreamRequest:
        return _openai_request(exchange, backend, "/embeddings", {**body, "model": backend.model})

    def whole(
        self, exchange: Exchange, answer: dict[str, Any], raw: bytes
    ) -> tuple[bytes, Usage | None, str]:
        return raw, Usage.from_openai(answer.get("usage")), ""

    def meter(self, exchange: Exchange, body: dict[str, Any]) -> StreamMeter:
        raise NotImplementedError("embeddings do not stream")


class ChatViaAnthropic:
    def request(
        self, exchange: Exchange, backend: Backend, body: dict[str, Any]
    ) -> UpstreamRequest:
        settings = exchange.services.settings
        payload = to_anthropic_request(
            body, backend.model, settings.default_max_tokens, settings.forward_fake_scripts
        )
        return _anthropic_request(exchange, backend, payload)

    def whole(
        self, exchange: Exchange, answer: dict[str, Any], raw: bytes
    ) -> tuple[bytes, Usage | None, str]:
        translated = to_openai_response(answer, exchange.requested_model)
        usage = Usage.from_anthropic(answer.get("usage"))
        return orjson.dumps(translated), usage, anthropic_text(answer)

    def meter(self, exchange: Exchange, body: dict[str, Any]) -> StreamMeter:
        options = body.get("stream_options")
        translator = StreamTranslator(
            exchange.requested_model,
            include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        )
        return AnthropicMeter(exchange.services.tokens, translator)


class Messages:
    def request(
        self, exchange: Exchange, backend: Backend, body: dict[str, Any]
    ) -> UpstreamRequest:
        return _anthropic_request(exchange, backend, {**body, "model": backend.model})

    def whole(
        self, exchange: Exchange, answer: dict[str, Any], raw: bytes
    ) -> tuple[bytes, Usage | None, str]:
        return raw, Usage.from_anthropic(answer.get("usage")), anthropic_text(answer)

    def meter(self, exchange: Exchange, body: dict[str, Any]) -> StreamMeter:
        return AnthropicMeter(exchange.services.tokens)
