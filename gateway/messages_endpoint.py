"""`POST /v1/messages`: the Anthropic Messages API for the `anthropic` SDK, metered like chat.

Requests go to the route's Anthropic backends as they are (the model name mapped), answers
and streams come back as they are, and usage (input, output, cache reads and writes) is read
from them: `message_start` carries input usage, `message_delta` the cumulative output. Errors
answer in Anthropic's shape. Models served only by OpenAI-compatible backends are refused with
a clear 400 (use /v1/chat/completions for them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmbudget_gateway import routing
from llmbudget_gateway.anthropic_forwarding import post, read_whole
from llmbudget_gateway.attribution import request_tags
from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.errors import GatewayError, bad_request
from llmbudget_gateway.intake import authenticate, optional_positive_int, read_json, require_model
from llmbudget_gateway.metering import Exchange
from llmbudget_gateway.services import Services
from llmbudget_gateway.usage import Usage

log = logging.getLogger("llmbudget.messages")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    error_type = ERROR_TYPES.get(status, "api_error")
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    return Response(orjson.dumps(body), status, headers or {}, media_type="application/json")


def anthropic_shaped(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except GatewayError as error:
            return anthropic_error(error.status, error.message, error.headers)
        except Exception:
            log.exception("unhandled error on POST /v1/messages")
            return anthropic_error(500, "internal error in the gateway")

    return endpoint


def _bound(body: dict[str, Any]) -> int:
    """Upper bound of the prompt's tokens: its UTF-8 length (a BPE token is at least a byte)."""
    return len(orjson.dumps(body.get("messages") or [])) + len(str(body.get("system") or ""))


async def messages(request: Request) -> Response:
    services: Services = request.app.state.services
    caller = authenticate(services, request)
    body = await read_json(request, services.settings.max_body_bytes)
    model = require_model(body)
    max_tokens = optional_positive_int(body, "max_tokens")
    if max_tokens is None:
        raise bad_request("'max_tokens' is required", param="max_tokens")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    stream = body.get("stream") is True
    tags = request_tags(request.headers, {"user": (body.get("metadata") or {}).get("user_id")})
    route = services.runtime.route_for(caller.namespace, model)
    if route is None:
        raise GatewayError(404, f"model: {model} is not available to you", code="not_found")
    chosen = routing.plan(route, body, services.rng)
    chosen = routing.Plan(
        [b for b in chosen.backends if b.provider is Provider.ANTHROPIC], chosen.decision
    )
    if not chosen.backends:
        raise bad_request(
            f"model '{model}' is served by OpenAI-compatible backends; use "
            "POST /v1/chat/completions for it",
            param="model",
        )
    exchange = Exchange(services, caller, tags, "messages", model, stream=stream)
    await exchange.admit(route, chosen.backends[0], _bound(body), max_tokens)
    exchange.route_decision = chosen.decision
    headers = {"x-llmbudget-request-id": exchange.request_id, "x-llmbudget-route": chosen.decision}
    try:
        response = await routing.send(
            exchange, route, chosen, "/messages", body, headers, lambda _: _forward
        )
    except asyncio.CancelledError:
        exchange.finish(None, 499, "cancelled")
        raise
    if response.status_code >= 400 and response.media_type == "application/json":
        error = orjson.loads(bytes(response.body)).get("error") or {}
        return anthropic_error(
            response.status_code, str(error.get("message", "upstream error")), headers
        )
    return response


async def _forward(
    exchange: Exchange, backend: Backend, path: str, body: dict[str, Any], headers: dict[str, str]
) -> Response:
    upstream = await post(exchange, backend, body, exchange.stream)
    if upstream.status >= 400 or not exchange.stream:
        raw = await read_whole(upstream, backend, headers)
        exchange.finish(Usage.from_anthropic(orjson.loads(raw).get("usage")), 200)
        return Response(raw, 200, headers, media_type="application/json")
    return StreamingResponse(
        _relay(exchange, upstream), headers=headers, media_type="text/event-stream"
    )


async def _relay(exchange: Exchange, upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    usage: dict[str, Any] = {}
    text: list[str] = []
    status, error_code, complete = 200, None, False
    try:
        async for line in upstream.content:
            if line.startswith(b"data:"):
                data = orjson.loads(line[5:].strip())
                kind = data.get("type")
                if kind == "message_start":
                    usage.update((data.get("message") or {}).get("usage") or {})
                elif kind == "message_delta":
                    usage.update(data.get("usage") or {})  # cumulative: overwrite
                elif kind == "content_block_delta":
                    exchange.mark_first_token()
                    delta = data.get("delta") or {}
                    text.append(str(delta.get("text") or delta.get("partial_json") or ""))
            yield line
        complete = True
    except asyncio.CancelledError:
        status, error_code = 499, "client_disconnected"
        raise
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
        status, error_code = 502, "upstream_stream_cut"
        log.warning("stream %s cut: %s", exchange.request_id, type(error).__name__)
    finally:
        with contextlib.suppress(Exception):
            (upstream.release if complete else upstream.close)()
        reported = Usage.from_anthropic(usage) if usage else None
        if complete and reported is not None and reported.total_tokens > 0:
            exchange.finish(reported, status)
        else:
            estimate = Usage(
                prompt_tokens=reported.prompt_tokens
                if reported and reported.prompt_tokens
                else exchange.prompt_estimate(),
                completion_tokens=exchange.services.tokens.count_text("".join(text)),
            )
            exchange.finish(estimate, status, error_code or "usage_missing", estimated=True)
