"""The OpenAI-compatible endpoints: chat completions, embeddings, models."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmbudget_gateway import routing
from llmbudget_gateway.anthropic_forwarding import forward_anthropic
from llmbudget_gateway.attribution import request_tags
from llmbudget_gateway.contract.config import Backend, Route
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.errors import GatewayError, bad_request
from llmbudget_gateway.forwarding import forward_json, forward_stream
from llmbudget_gateway.intake import (
    authenticate,
    optional_positive_int,
    read_json,
    require_bool,
    require_model,
)
from llmbudget_gateway.metering import Exchange
from llmbudget_gateway.response_cache import Entry, ResponseCache, as_stream
from llmbudget_gateway.runtime import Caller
from llmbudget_gateway.services import Services


@contextmanager
def settled_on_failure(exchange: Exchange) -> Iterator[None]:
    """If forwarding dies before the exchange is finished (cancelled at shutdown, a bug), the
    reservation is released and a ledger row says why: a reservation never leaks."""
    try:
        yield
    except asyncio.CancelledError:
        exchange.finish(None, 499, "cancelled")
        raise
    except BaseException:
        exchange.finish(None, 500, "internal_error")
        raise


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _route(services: Services, caller: Caller, model: str) -> Route:
    route = services.runtime.route_for(caller.namespace, model)
    if route is None:
        raise GatewayError(
            404,
            f"The model '{model}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    return route


async def chat_completions(request: Request) -> Response:
    services = _services(request)
    caller = authenticate(services, request)
    body = await read_json(request, services.settings.max_body_bytes)
    model = require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    stream = require_bool(body, "stream")
    max_tokens = optional_positive_int(body, "max_completion_tokens", "max_tokens")
    tags = request_tags(request.headers, body)
    route = _route(services, caller, model)
    exchange = Exchange(services, caller, tags, "chat.completions", model, stream=stream)
    cache_key, cache_state = None, "off"
    if route.cache_ttl_seconds > 0:
        cache_key = ResponseCache.key(route, body)
        if "no-cache" in request.headers.get("cache-control", "").lower():
            cache_state = "bypass"
        elif (entry := services.cache.get(cache_key)) is not None:
            return _serve_cached(exchange, route, body, entry)
        else:
            cache_state = "miss"
        services.metrics.cache_requests.labels(caller.namespace, model, cache_state).inc()
    chosen = routing.plan(route, body, services.rng)
    tools = orjson.dumps(body["tools"]).decode() if body.get("tools") else ""

    def exact_prompt() -> int:
        return services.tokens.count_messages(messages) + services.tokens.count_text(tools)

    prompt_bound = services.tokens.bound_messages(messages) + len(tools.encode())
    await exchange.admit(
        route,
        chosen.backends[0],
        prompt_bound,
        max_tokens or services.settings.default_max_tokens,
        exact_prompt,
    )
    exchange.route_decision = chosen.decision
    headers = {"x-llmbudget-request-id": exchange.request_id, "x-llmbudget-route": chosen.decision}
    reservation = exchange.reservation
    if reservation is not None and reservation.downgrade_to and reservation.downgrade_to != model:
        target = services.runtime.route_for(caller.namespace, reservation.downgrade_to)
        if target is not None:
            route, chosen = target, routing.plan(target, body, services.rng)
            exchange.route = route
            exchange.route_decision = f"downgrade to {target.model}; {chosen.decision}"
            headers["x-llmbudget-downgraded"] = f"{model} -> {target.model}"
            headers["x-llmbudget-route"] = chosen.decision
    openai_forward = forward_stream if stream else forward_json

    def forward_for(backend: Backend) -> routing.Forward:
        return forward_anthropic if backend.provider is Provider.ANTHROPIC else openai_forward

    if cache_key is not None:
        headers["x-llmbudget-cache"] = cache_state
    with settled_on_failure(exchange):
        response = await routing.send(
            exchange, route, chosen, "/chat/completions", body, headers, forward_for
        )
    if cache_key is not None and not stream and response.status_code == 200:
        services.cache.put(
            cache_key, bytes(response.body), exchange.cost_micros, route.cache_ttl_seconds
        )
    return response


def _serve_cached(exchange: Exchange, route: Route, body: dict[str, Any], entry: Entry) -> Response:
    """A cache hit: no provider, no reservation, nothing billed; a ledger row all the same."""
    services = exchange.services
    exchange.route, exchange.route_decision = route, "cache hit"
    exchange.finish(None, 200)
    namespace, model = exchange.caller.namespace, exchange.requested_model
    services.metrics.cache_requests.labels(namespace, model, "hit").inc()
    services.metrics.cache_saved.labels(namespace, model).inc(entry.cost_micros / 1_000_000)
    headers = {"x-llmbudget-request-id": exchange.request_id, "x-llmbudget-cache": "hit"}
    if not exchange.stream:
        return Response(entry.body, 200, headers, media_type="application/json")
    options = body.get("stream_options")
    events = as_stream(entry.body, isinstance(options, dict) and bool(options.get("include_usage")))

    async def replay() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    return StreamingResponse(replay(), 200, headers, media_type="text/event-stream")


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


async def embeddings(request: Request) -> Response:
    services = _services(request)
    caller = authenticate(services, request)
    body = await read_json(request, services.settings.max_body_bytes)
    model = require_model(body)
    prompt_tokens = _embedding_input_tokens(services, body.get("input"))
    tags = request_tags(request.headers, body)
    route = _route(services, caller, model)
    exchange = Exchange(services, caller, tags, "embeddings", model)
    chosen = routing.plan(route, body, services.rng)
    chosen = routing.Plan(
        [b for b in chosen.backends if b.provider is not Provider.ANTHROPIC], chosen.decision
    )
    if not chosen.backends:
        raise bad_request(
            f"model '{model}' is served by Anthropic, which has no embeddings API",
            param="model",
            code="unsupported_for_model",
        )
    await exchange.admit(route, chosen.backends[0], prompt_tokens, 0)
    exchange.route_decision = chosen.decision
    headers = {"x-llmbudget-request-id": exchange.request_id, "x-llmbudget-route": chosen.decision}
    with settled_on_failure(exchange):
        return await routing.send(
            exchange, route, chosen, "/embeddings", body, headers, lambda _: forward_json
        )


async def list_models(request: Request) -> Response:
    services = _services(request)
    caller = authenticate(services, request)
    data = [
        {"id": model, "object": "model", "created": 0, "owned_by": "llmbudget"}
        for model in services.runtime.models_for(caller.namespace)
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
