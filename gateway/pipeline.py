"""One path for every proxied request: decide, admit, forward, settle.

Every endpoint (`/v1/chat/completions`, `/v1/embeddings`, `/v1/messages`) validates its body
into a `Call` and hands it to `run`, which is the only place that

1. *decides*: the route, a cache hit (served, recorded, nothing billed), the model a Downgrade
   budget sends the request to, and the plan of backends it may reach;
2. *admits*: reserves the worst case at the dearest backend of that plan (metering.py), or
   refuses with a 429;
3. *forwards*: tries the plan (routing.py) with the API's adapter (adapters.py, relay.py);
4. *settles*: exactly once, whatever happens, through `Exchange.finish`: real usage, an
   estimate flagged as one, or a release; `settled_on_failure` covers cancellation and bugs.

Rows are stored by the ledger writer, off the request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response, StreamingResponse

from llmbudget_gateway import relay, routing
from llmbudget_gateway.contract.config import Backend, Route
from llmbudget_gateway.errors import GatewayError, bad_request
from llmbudget_gateway.metering import Exchange
from llmbudget_gateway.relay import Adapter
from llmbudget_gateway.response_cache import Entry, ResponseCache, as_stream
from llmbudget_gateway.runtime import Caller
from llmbudget_gateway.services import Services


@dataclass
class Call:
    """A validated request, as the endpoint understood it."""

    endpoint: str  # ledger name: chat.completions, embeddings, messages
    model: str
    body: dict[str, Any]
    stream: bool
    tags: dict[str, str]
    prompt_bound: int  # a cheap upper bound of the prompt's tokens
    max_output: int  # completion tokens to reserve (max_tokens x n)
    adapter_for: Callable[[Backend], Adapter | None]  # None: cannot serve this endpoint
    unsupported: str  # the 400's message when no backend of the plan can
    exact_prompt: Callable[[], int] | None = None  # the tokenizer's count, when near a limit
    check: Callable[[list[Backend]], None] | None = None  # raises a 400 before admission
    cacheable: bool = False
    cache_bypass: bool = False  # Cache-Control: no-cache


@contextmanager
def settled_on_failure(exchange: Exchange) -> Iterator[None]:
    """If forwarding dies before the exchange is finished (cancelled at shutdown, a bug), the
    reservation is released and a ledger row says why: a reservation never leaks."""
    try:
        yield
    except asyncio.CancelledError:
        exchange.finish(None, 499, "cancelled")
        raise
    except GatewayError as error:
        exchange.finish(None, error.status, error.code)
        raise
    except BaseException:
        exchange.finish(None, 500, "internal_error")
        raise


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


def _plan(services: Services, call: Call, route: Route) -> routing.Plan:
    return routing.plan(route, call.body, services.rng).only(
        lambda b: call.adapter_for(b) is not None
    )


async def run(services: Services, caller: Caller, call: Call) -> Response:
    route = _route(services, caller, call.model)
    exchange = Exchange(services, caller, call.tags, call.endpoint, call.model, stream=call.stream)
    headers = {"x-llmbudget-request-id": exchange.request_id}
    cache_key, cache_state = None, "off"
    if call.cacheable and route.cache_ttl_seconds > 0:
        cache_key = ResponseCache.key(route, caller.namespace, call.body)
        entry = None
        if call.cache_bypass:
            cache_state = "bypass"
        elif (entry := services.cache.get(cache_key)) is not None:
            return _serve_cached(exchange, route, call, entry, headers)
        else:
            cache_state = "miss"
        services.metrics.cache_requests.labels(caller.namespace, call.model, cache_state).inc()
        headers["x-llmbudget-cache"] = cache_state
    chosen = _plan(services, call, route)
    decision = chosen.decision
    target = services.book.downgrade_target(caller.namespace, call.tags, datetime.now(UTC))
    if target is not None and target != call.model:
        lower = services.runtime.route_for(caller.namespace, target)
        lower_plan = _plan(services, call, lower) if lower is not None else None
        if lower is not None and lower_plan is not None and lower_plan.backends:
            route, chosen = lower, lower_plan
            decision = f"downgrade to {lower.model}; {chosen.decision}"
            headers["x-llmbudget-downgraded"] = f"{call.model} -> {lower.model}"
    if not chosen.backends:
        raise bad_request(call.unsupported, param="model", code="unsupported_for_model")
    if call.check is not None:
        call.check(chosen.backends)
    await exchange.admit(
        route, chosen.backends, call.prompt_bound, call.max_output, call.exact_prompt
    )
    exchange.route_decision = decision
    headers["x-llmbudget-route"] = chosen.decision

    async def attempt(backend: Backend) -> Response:
        adapter = call.adapter_for(backend)
        assert adapter is not None  # the plan holds only backends with an adapter
        body = {k: v for k, v in call.body.items() if k != "stream"}
        if call.stream:
            body["stream"] = True
        return await relay.forward(exchange, backend, adapter, body, headers, call.stream)

    with settled_on_failure(exchange):
        response = await routing.send(exchange, route, chosen, attempt)
    # A downgraded answer is the cheaper model's: never stored under the requested model's key
    downgraded = "x-llmbudget-downgraded" in headers
    if cache_key is not None and not call.stream and response.status_code == 200 and not downgraded:
        services.cache.put(
            cache_key, bytes(response.body), exchange.cost_micros, route.cache_ttl_seconds
        )
    return response


def _serve_cached(
    exchange: Exchange, route: Route, call: Call, entry: Entry, headers: dict[str, str]
) -> Response:
    """A cache hit: no provider, no reservation, nothing billed; a ledger row all the same."""
    services = exchange.services
    exchange.route, exchange.route_decision = route, "cache hit"
    exchange.finish(None, 200)
    namespace, model = exchange.caller.namespace, exchange.requested_model
    services.metrics.cache_requests.labels(namespace, model, "hit").inc()
    services.metrics.cache_saved.labels(namespace, model).inc(entry.cost_micros / 1_000_000)
    headers = {**headers, "x-llmbudget-cache": "hit"}
    if not call.stream:
        return Response(entry.body, 200, headers, media_type="application/json")
    options = call.body.get("stream_options")
    events = as_stream(entry.body, isinstance(options, dict) and bool(options.get("include_usage")))

    async def replay() -> AsyncIterator[bytes]:
        for event in events:
            yield event

    return StreamingResponse(replay(), 200, headers, media_type="text/event-stream")
