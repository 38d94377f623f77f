"""OpenAI chat completions ↔ Anthropic Messages: requests, responses and stream events (pure).

Covered: system prompts, text and image parts, tools and tool calls/results, stop sequences,
temperature/top_p, max tokens (required by Anthropic: the request's, else the gateway
default), usage with cache reads and writes, finish reasons. Not covered: n > 1, logprobs,
response_format. Anthropic-only fields go in an `anthropic` object of the request (e.g.
`extra_body={"anthropic": {"thinking": {...}, "top_k": 5}}` with the openai SDK): only those of
ANTHROPIC_EXTRAS; the fields the gateway controls (model, max_tokens, stream, ...) cannot be
overridden there. A request that cannot be translated is a 400, never a 500.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from llmbudget_gateway.errors import GatewayError, bad_request
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


# Fields of the request's `anthropic` object passed to Anthropic. Everything the gateway
# controls (model, messages, max_tokens, stream, system, ...) is refused: the reservation was
# made for them.
ANTHROPIC_EXTRAS = ("thinking", "top_k", "tool_choice", "metadata", "stop_sequences")


def _invalid(message: str, param: str) -> GatewayError:
    return bad_request(message, param=param, code="invalid_value")


def _image(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        raise _invalid("'image_url' must be an object with a string 'url'", f"{param}.image_url")
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _content(content: Any, param: str) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise _invalid("'content' must be a string or an array of parts", param)
    blocks = []
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _invalid("each content part must be an object", where)
        if part.get("type") == "text":
            if not isinstance(part.get("text"), str):
                raise _invalid("a text part needs a string 'text'", f"{where}.text")
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            blocks.append(_image(part, where))
    return blocks


def _text(content: Any, param: str) -> str:
    return "\n".join(b["text"] for b in _content(content, param) if b["type"] == "text")


def _tool_use(call: Any, param: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise _invalid("each tool call must be an object with a 'function' object", param)
    raw = function.get("arguments") or "{}"
    if not isinstance(raw, str):
        raise _invalid("tool call 'arguments' must be a JSON string", f"{param}.function")
    try:
        arguments = json.loads(raw)
    except json.JSONDecodeError:
        arguments = {}
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
            "input": arguments if isinstance(arguments, dict) else {}}  # fmt: skip


def _stop(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop] if stop else []
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise _invalid("'stop' must be a string or an array of strings", "stop")


def _extras(extra: Any) -> dict[str, Any]:
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise _invalid("'anthropic' must be an object", "anthropic")
    refused = sorted(set(extra) - set(ANTHROPIC_EXTRAS))
    if refused:
        raise bad_request(
            f"'anthropic' may only hold {', '.join(ANTHROPIC_EXTRAS)}; not {', '.join(refused)} "
            "(the gateway sets the others from the request)",
            param="anthropic",
            code="unsupported_parameter",
        )
    if "metadata" in extra and not isinstance(extra["metadata"], dict):
        raise _invalid("'anthropic.metadata' must be an object", "anthropic.metadata")
    return dict(extra)


def to_anthropic_request(
    body: dict[str, Any], model: str, default_max_tokens: int, forward_fake: bool = False
) -> dict[str, Any]:
    """The Messages request for an OpenAI chat body; a 400 GatewayError for what cannot be
    translated (so a bad request is refused before anything is reserved or sent)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def append(role: str, blocks: list[dict[str, Any]]) -> None:
        if messages and messages[-1]["role"] == role:  # Anthropic wants alternating roles
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for index, message in enumerate(body.get("messages") or []):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _invalid("each message must be an object", param)
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            system.append(_text(content, f"{param}.content"))
        elif role == "tool":
            result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"),
                      "content": _text(content, f"{param}.content")}  # fmt: skip
            append("user", [result])
        elif role == "assistant":
            blocks = _content(content, f"{param}.content")
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise _invalid("'tool_calls' must be an array", f"{param}.tool_calls")
            blocks += [_tool_use(c, f"{param}.tool_calls[{i}]") for i, c in enumerate(calls)]
            append("assistant", blocks)
        else:
            append("user", _content(content, f"{param}.content"))
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
    stop = _stop(body.get("stop")) if body.get("stop") is not None else []
    if stop:
        request["stop_sequences"] = stop
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(
        isinstance(t, dict) and isinstance(t.get("function"), dict) for t in tools
    ):
        raise _invalid("'tools' must be an array of {type: function, function: {...}}", "tools")
    if tools:
        request["tools"] = [
            {
                "name": t["function"].get("name"),
                "description": t["function"].get("description", ""),
                "input_schema": t["function"].get("parameters") or {"type": "object"},
            }
            for t in tools
        ]
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    request.update(_extras(body.get("anthropic")))
    if forward_fake and isinstance(body.get("fake"), dict):
        request["fake"] = body["fake"]  # the built-in fake provider's script (tests, demo)
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
