"""Talking to a provider: one POST, one reader of whole answers, one SSE relay for every API.

What differs between APIs (OpenAI chat and embeddings, OpenAI chat served by Anthropic, the
Anthropic Messages API) lives in an `Adapter` (adapters.py): how to build the upstream request,
how to read a whole answer, and a `StreamMeter` that turns each upstream event into the bytes
the client gets and keeps the usage it carries. Everything else is written once here:

- connection failures, error statuses and answers that are not JSON become `UpstreamFailure`
  (upstream_errors.py), which the router retries or answers;
- a stream ends in exactly one of four ways, each settled once: complete (the API's terminal
  event: `[DONE]`, `message_stop`), cut by the provider (the client gets an error event in its
  own API's shape), timed out, or cancelled by the client. A stream that has delivered its
  terminal event is complete even if the client closes before the provider ends its HTTP
  response. Cut and cancelled streams are billed from an estimate (`StreamMeter.estimate`);
- a provider that will bill an answer the gateway could not deliver (a body cut after its
  200, a timeout after the request was sent) is billed at an estimate, never $0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson
from starlette.responses import Response, StreamingResponse

from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.upstream_errors import UpstreamFailure, from_status, invalid_answer
from llmbudget_gateway.usage import Usage

if TYPE_CHECKING:
    from llmbudget_gateway.metering import Exchange

log = logging.getLogger("llmbudget.relay")
CONNECT_TIMEOUT = 10.0
MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class SseEvent:
    name: str  # the `event:` field, "" when absent
    data: bytes  # the `data:` lines joined
    raw: bytes  # the event as received, ending in its blank line


class ProviderStreamError(Exception):
    """The provider reported an error inside a stream (Anthropic `event: error`, ...)."""


class StreamMeter(Protocol):
    done: bool  # the API's terminal event was relayed
    started: bool  # output (a token) has arrived: time to first token

    def feed(self, event: SseEvent) -> list[bytes]:
        """The bytes to send the client for one upstream event (raises ProviderStreamError)."""

    def at_eof(self) -> list[bytes]:
        """Bytes to send when the provider ended the stream without its terminal event, if it
        may still count as complete (it sets `done`); usually nothing."""

    def reported(self) -> Usage | None:
        """The usage the provider reported, if the stream carried it."""

    def estimate(self, exchange: Exchange) -> Usage:
        """Usage of a stream that did not complete: what was reported so far (the input split
        of `message_start`), else the prompt estimate, plus the tokens of the text relayed."""

    def error_event(self, code: str, message: str) -> bytes:
        """An error event in the client's API, for a stream the provider cut."""


@dataclass(frozen=True)
class UpstreamRequest:
    url: str
    headers: dict[str, str]
    payload: dict[str, Any]
    secrets: tuple[str, ...] = ()  # never logged


class Adapter(Protocol):
    def request(
        self, exchange: Exchange, backend: Backend, body: dict[str, Any]
    ) -> UpstreamRequest:
        """The provider request for the client's body (the model already mapped)."""

    def whole(
        self, exchange: Exchange, answer: dict[str, Any], raw: bytes
    ) -> tuple[bytes, Usage | None, str]:
        """A whole JSON answer: (body for the client, reported usage, output text)."""

    def meter(self, exchange: Exchange, body: dict[str, Any]) -> StreamMeter:
        """A fresh meter for one streamed answer."""


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None


def connection_failure(
    backend: Backend, error: BaseException, *, stream: bool, answered: bool = False
) -> UpstreamFailure:
    """A request that failed on the wire. A timeout waiting for the answer (not for the
    connection) is billable: the provider got the request; `answered`: its 200 had arrived."""
    never_reached = isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    billable = answered or (not never_reached and isinstance(error, TimeoutError))
    if isinstance(error, TimeoutError) and not never_reached:
        status, code = 504, "upstream_timeout"
        message = f"backend {backend.name} timed out"
    elif never_reached:
        status, code = 502, "upstream_unreachable"
        message = f"cannot connect to backend {backend.name}"
    else:
        status, code = 502, "upstream_error"
        message = f"backend {backend.name} failed: {type(error).__name__}"
    if answered and status != 504:
        code, message = "upstream_body_cut", f"backend {backend.name} cut its answer"
    log.warning("backend %s: %s (%s)", backend.name, code, type(error).__name__)
    return UpstreamFailure(
        status, code, message, retryable=True, billable=billable, whole_answer=not stream
    )


async def post(
    exchange: Exchange, backend: Backend, request: UpstreamRequest, stream: bool
) -> aiohttp.ClientResponse:
    timeout = aiohttp.ClientTimeout(
        total=None if stream else backend.timeout_seconds,
        sock_connect=CONNECT_TIMEOUT,
        sock_read=backend.timeout_seconds,
    )
    try:
        return await exchange.services.session.post(
            request.url, data=orjson.dumps(request.payload), headers=request.headers,
            timeout=timeout,
        )  # fmt: skip
    except (TimeoutError, aiohttp.ClientError) as error:
        raise connection_failure(backend, error, stream=stream) from None


async def _fail_on_status(
    backend: Backend, request: UpstreamRequest, upstream: aiohttp.ClientResponse
) -> None:
    if upstream.status < 400:
        return
    try:
        raw = await upstream.content.read(MAX_ERROR_BODY)
    except (TimeoutError, aiohttp.ClientError):
        raw = b""
    finally:
        upstream.close()
    raise from_status(
        backend.name, upstream.status, raw, _retry_after(upstream.headers), request.secrets
    )


async def forward(
    exchange: Exchange,
    backend: Backend,
    adapter: Adapter,
    body: dict[str, Any],
    headers: dict[str, str],
    stream: bool,
) -> Response:
    """One attempt at one backend: the client's response, or UpstreamFailure."""
    request = adapter.request(exchange, backend, body)
    upstream = await post(exchange, backend, request, stream)
    await _fail_on_status(backend, request, upstream)
    content_type = upstream.headers.get("Content-Type", "")
    if stream:
        if content_type.startswith("text/event-stream"):
            meter = adapter.meter(exchange, body)
            headers = {**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return StreamingResponse(
                relay(exchange, backend, upstream, meter),
                200,
                headers,
                media_type="text/event-stream",
            )
        upstream.close()
        raise invalid_answer(backend.name, f"{content_type or 'no content type'} to a stream")
    try:
        raw = await upstream.read()
    except (TimeoutError, aiohttp.ClientError) as error:
        raise connection_failure(backend, error, stream=stream, answered=True) from None
    finally:
        upstream.release()
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict):
        raise invalid_answer(backend.name, f"{len(raw)} bytes of {content_type or 'no type'}")
    try:
        client_body, usage, text = adapter.whole(exchange, answer, raw)
    except Exception as error:  # JSON, but not the shape the API documents
        raise invalid_answer(
            backend.name, f"an answer of an unexpected shape ({type(error).__name__})"
        ) from None
    if usage is None or usage.total_tokens == 0:
        exchange.finish(exchange.estimate_whole(text), 200, "usage_missing", estimated=True)
    else:
        exchange.finish(usage, 200)
    return Response(client_body, 200, headers, media_type="application/json")


async def sse_events(content: aiohttp.StreamReader) -> AsyncIterator[SseEvent]:
    """Server-sent events, as the provider framed them."""
    lines: list[bytes] = []
    name, data = "", list[bytes]()
    async for line in content:
        if line in (b"\n", b"\r\n"):
            if lines:
                yield SseEvent(name, b"\n".join(data), b"".join(lines) + line)
            lines, name, data = [], "", []
            continue
        lines.append(line)
        if line.startswith(b"data:"):
            data.append(line[5:].strip())
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    if lines:
        yield SseEvent(name, b"\n".join(data), b"".join(lines) + b"\n")


async def relay(
    exchange: Exchange,
    backend: Backend,
    upstream: aiohttp.ClientResponse,
    meter: StreamMeter,
) -> AsyncIterator[bytes]:
    """Relay one stream and settle it exactly once, however it ends."""
    outcome, code = "cut", "upstream_stream_cut"
    try:
        async for event in sse_events(upstream.content):
            for chunk in meter.feed(event):
                yield chunk
            if meter.started:
                exchange.mark_first_token()
            if meter.done:
                break  # complete: never wait for the provider to end its HTTP response
        if not meter.done:
            for chunk in meter.at_eof():
                yield chunk
        if meter.done:
            outcome = "complete"
        else:
            log.warning("stream %s ended without its terminal event", exchange.request_id)
            with contextlib.suppress(Exception):
                yield meter.error_event(code, f"backend {backend.name} cut the stream")
    except (asyncio.CancelledError, GeneratorExit):  # the client went away
        outcome = "complete" if meter.done else "cancelled"
        raise
    except (TimeoutError, aiohttp.ClientError, ProviderStreamError, ValueError) as error:
        timed_out = isinstance(error, TimeoutError)
        code = "upstream_timeout" if timed_out else "upstream_stream_cut"
        if isinstance(error, ProviderStreamError):
            code = "upstream_stream_error"
        log.warning("stream %s cut: %s", exchange.request_id, type(error).__name__)
        with contextlib.suppress(Exception):
            yield meter.error_event(code, f"backend {backend.name} interrupted the stream")
    finally:
        if outcome == "complete":
            upstream.release()
        else:
            upstream.close()  # unread data on it: never reuse
        _settle_stream(exchange, meter, outcome, code)


def _settle_stream(exchange: Exchange, meter: StreamMeter, outcome: str, code: str) -> None:
    reported = meter.reported()
    if outcome == "complete":
        if reported is not None and reported.total_tokens > 0:
            exchange.finish(reported, 200)
        else:
            exchange.finish(meter.estimate(exchange), 200, "usage_missing", estimated=True)
        return
    status = 499 if outcome == "cancelled" else 504 if code == "upstream_timeout" else 502
    error = "client_disconnected" if outcome == "cancelled" else code
    exchange.finish(meter.estimate(exchange), status, error, estimated=True)
