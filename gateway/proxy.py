"""The OpenAI-compatible endpoints: chat completions, embeddings, models.

Each validates its body into a `pipeline.Call`; admission, forwarding and settlement are the
pipeline's (pipeline.py), the same for every endpoint.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from llmbudget_gateway import pipeline
from llmbudget_gateway.adapters import ChatViaAnthropic, OpenAIChat, OpenAIEmbeddings
from llmbudget_gateway.anthropic_translation import to_anthropic_request
from llmbudget_gateway.attribution import request_tags
from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.errors import bad_request
from llmbudget_gateway.intake import (
    authenticate,
    optional_positive_int,
    read_json,
    require_bool,
    require_model,
)
from llmbudget_gateway.relay import Adapter
from llmbudget_gateway.services import Services
from llmbudget_gateway.tokens import TOOL_USE_OVERHEAD

MAX_CHOICES = 128
_OPENAI_CHAT, _VIA_ANTHROPIC, _EMBEDDINGS = OpenAIChat(), ChatViaAnthropic(), OpenAIEmbeddings()


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _chat_adapter(backend: Backend) -> Adapter:
    return _VIA_ANTHROPIC if backend.provider is Provider.ANTHROPIC else _OPENAI_CHAT


def _max_output(body: dict[str, Any], default: int) -> int:
    """Completion tokens to reserve: the larger of max_tokens and max_completion_tokens (a
    provider may honour either), else the default; times `n` choices."""
    limits = [
        value
        for name in ("max_completion_tokens", "max_tokens")
        if (value := optional_positive_int(body, name)) is not None
    ]
    choices = optional_positive_int(body, "n") or 1
    if choices > MAX_CHOICES:
        raise bad_request(f"'n' must be at most {MAX_CHOICES}", param="n")
    return (max(limits) if limits else default) * choices


async def chat_completions(request: Request) -> Response:
    services = _services(request)
    caller = authenticate(services, request)
    body = await read_json(request, services.settings.max_body_bytes)
    model = require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    stream = require_bool(body, "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", param="stream_options")
    max_output = _max_output(body, services.settings.default_max_tokens)
    tools = orjson.dumps(body["tools"]).decode() if body.get("tools") else ""
    tool_overhead = TOOL_USE_OVERHEAD if tools else 0  # the provider's tool prompt

    def exact_prompt() -> int:
        count = services.tokens.count_messages(messages) + services.tokens.count_text(tools)
        return count + tool_overhead

    def check(backends: list[Backend]) -> None:
        if any(b.provider is Provider.ANTHROPIC for b in backends):
            to_anthropic_request(body, model, max_output)  # a 400 for what cannot translate

    call = pipeline.Call(
        endpoint="chat.completions",
        model=model,
        body=body,
        stream=stream,
        tags=request_tags(request.headers, body),
        prompt_bound=services.tokens.bound_messages(messages) + len(tools.encode()) + tool_overhead,
        max_output=max_output,
        adapter_for=_chat_adapter,
        unsupported=f"model '{model}' has no backend for chat completions",
        exact_prompt=exact_prompt,
        check=check,
        cacheable=True,
        cache_bypass="no-cache" in request.headers.get("cache-control", "").lower(),
    )
    return await pipeline.run(services, caller, call)


def _embedding_input_tokens(services: Services, value: Any) -> int:
    if isinstance(value, str):
        return services.tokens.count_text(value)
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return sum(services.tokens.count_text(item) for item in value)
        if all(isinstance(item, int) for item in value):
            return len(value)
        if all(isinstance(item, list) for item in value):
            return sum(len(item) for item in value)
    raise bad_request(
        "'input' must be a string, an array of strings or of token arrays", param="input"
    )


def _embeddings_adapter(backend: Backend) -> Adapter | None:
    return None if backend.provider is Provider.ANTHROPIC else _EMBEDDINGS


async def embeddings(request: Request) -> Response:
    services = _services(request)
    caller = authenticate(services, request)
    body = await read_json(request, services.settings.max_body_bytes)
    model = require_model(body)
    call = pipeline.Call(
        endpoint="embeddings",
        model=model,
        body=body,
        stream=False,
        tags=request_tags(request.headers, body),
        prompt_bound=_embedding_input_tokens(services, body.get("input")),
        max_output=0,
        adapter_for=_embeddings_adapter,
        unsupported=f"model '{model}' is served by Anthropic, which has no embeddings API",
    )
    return await pipeline.run(services, caller, call)


async def list_models(request: Request) -> Response:
    services = _services(request)
    caller = authenticate(services, request)
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": "llmbudget"}
        for model in services.runtime.models_for(caller.namespace)
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
