"""OpenAI chat completions ↔ Anthropic Messages: requests, responses and stream events (pure).

Covered: system prompts, text and image parts, tools and tool calls/results, stop sequences,
temperature/top_p, max tokens (required by Anthropic: the request's, else the gateway
default), usage with cache reads and writes, finish reasons. Not covered: n > 1, logprobs,
response_format. Anthropic-only fields go in an `anthropic` object of the request (e.g.
`extra_body={"anthropic": {"thinking": {...}, "top_k": 5}}` with the openai SDK).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from llmbudget_gateway.usage import Usage

ANTHROPIC_VERSION = "2023-06-01"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


def messages_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"


def _image(part: dict[str, Any]) -> dict[str, Any]:
    url = str((part.get("image_url") or {}).get("url", ""))
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif part.get("type") == "image_url":
            blocks.append(_image(part))
    return blocks


def _text(content: Any) -> str:
    return "\n".join(b["text"] for b in _content(content) if b["type"] == "text")


def to_anthropic_request(
    body: dict[str, Any], model: str, default_max_tokens: int
) -> dict[str, Any]:
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if messages and messages[-1]["role"] == role:  # Anthropic wants alternating roles
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
        elif role == "tool":
            append(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": message.get("tool_call_id"),
                        "content": _text(message.get("content")),
                    }
                ],
            )
        elif role == "assistant":
            blocks = _content(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except json.JSONDecodeError:
                    arguments = {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id"),
                        "name": function.get("name"),
                        "input": arguments,
                    }
                )
            append("assistant", blocks)
        else:
            append("user", _content(message.get("content")))
    request: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or default_max_tokens,
    }
    if system:
        request["system"] = "\n\n".join(system)
    for key in ("temperature", "top_p", "stream"):
        if body.get(key) is not None:
            request[key] = body[key]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict)]
    if tools:
        request["tools"] = [
            {
                "name": f.get("name"),
                "description": f.get("description", ""),
                "input_schema": f.get("parameters") or {"type": "object"},
            }
            for f in tools
            if isinstance(f, dict)
        ]
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    extra = body.get("anthropic")
    if isinstance(extra, dict):  # Anthropic-only fields (thinking, top_k, ...), passed as they are
        request.update({k: v for k, v in extra.items() if k not in ("model", "messages")})
    return request


def openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def to_openai_response(message: dict[str, Any], requested_model: str) -> dict[str, Any]:
    text = "".join(
        b.get("text", "") for b in message.get("content") or [] if b.get("type") == "text"
    )
    reply: dict[str, Any] = {"role": "assistant", "content": text or None}
    calls = [
        {
            "id": b.get("id"),
            "type": "function",
            "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input") or {})},
        }
        for b in message.get("content") or []
        if b.get("type") == "tool_use"
    ]
    if calls:
        reply["tool_calls"] = calls
    usage = Usage.from_anthropic(message.get("usage")) or Usage()
    return {
        "id": message.get("id", "msg"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": requested_model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": FINISH_REASONS.get(str(message.get("stop_reason")), "stop"),
            }
        ],
        "usage": openai_usage(usage),
    }


@dataclass
class StreamTranslator:
    """Anthropic SSE events in, OpenAI chat.completion.chunk objects out."""

    model: str
    include_usage: bool
    id: str = "msg"
    created: int = field(default_factory=lambda: int(time.time()))
    usage_fields: dict[str, Any] = field(default_factory=dict)
    tool_index: dict[int, int] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)  # for estimating cut streams

    @property
    def usage(self) -> Usage | None:
        return Usage.from_anthropic(self.usage_fields) if self.usage_fields else None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def event(self, kind: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id", self.id)
            self.usage_fields.update(message.get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tool_index.setdefault(data.get("index", 0), len(self.tool_index))
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": block.get("id"),
                                    "type": "function",
                                    "function": {"name": block.get("name"), "arguments": ""},
                                }
                            ]
                        }
                    )
                ]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                self.text.append(delta.get("text", ""))
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(data.get("index", 0), 0)
                self.text.append(delta.get("partial_json", ""))
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "function": {"arguments": delta.get("partial_json", "")},
                                }
                            ]
                        }
                    )
                ]
            return []
        if kind == "message_delta":
            self.usage_fields.update(data.get("usage") or {})  # cumulative: overwrite
            reason = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, FINISH_REASONS.get(str(reason), "stop"))]
        if kind == "message_stop" and self.include_usage and self.usage is not None:
            return [
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": openai_usage(self.usage),
                }
            ]
        return []
