"""Sending a request to a provider and relaying its answer (whole or streamed), metered.

Streaming: when the client did not ask for usage, `stream_options.include_usage` is added
upstream and the extra usage-only chunk is dropped before it reaches the client. If a stream
ends without usage (client disconnect, upstream reset, timeout) the request is billed from an
estimate (prompt estimate + tokens of the text already relayed) and marked `estimated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from starlette.responses import Response, StreamingResponse

from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.errors import GatewayError, error_body
from llmbudget_gateway.metering import Exchange
from llmbudget_gateway.usage import Usage

log = logging.getLogger("llmbudget.forwarding")
CONNECT_TIMEOUT = 10.0
_NULL_USAGE = (b'"usage":null', b'"usage": null')


def upstream_url(exchange: Exchange, backend: Backend, path: str) -> str:
    base = exchange.services.settings.upstream_override or backend.base_url
    return base.rstrip("/") + path


def upstream_headers(backend: Backend) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if backend.api_key is not None:
        headers["Authorization"] = f"Bearer {backend.api_key.get_secret_value()}"
    return headers


def _upstream_error(status: int, raw: bytes) -> tuple[bytes, str]:
    """The error body to give the client (OpenAI shape) and the code for the ledger."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        code = parsed["error"].get("code") or parsed["error"].get("type")
        return raw, str(code or f"upstream_{status}")
    message = f"upstream provider answered HTTP {status}"
    return error_body(message, "upstream_error", f"upstream_{status}"), f"upstream_{status}"


def _connection_error(exchange: Exchange, error: BaseException) -> GatewayError:
    backend = exchange.backend.name if exchange.backend else "?"
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        exchange.finish(None, 504, "upstream_timeout")
        return GatewayError(
            504,
            f"upstream backend {backend} timed out",
            type="upstream_error",
            code="upstream_timeout",
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        exchange.finish(None, 502, "upstream_unreachable")
        return GatewayError(
            502,
            f"cannot connect to upstream backend {backend}",
            type="upstream_error",
            code="upstream_unreachable",
        )
    exchange.finish(None, 502, "upstream_error")
    return GatewayError(
        502,
        f"upstream backend {backend} failed: {type(error).__name__}",
        type="upstream_error",
        code="upstream_error",
    )


def _estimate(exchange: Exchange, payloads: list[bytes]) -> Usage:
    """Usage of a cut stream: the prompt estimate plus tokens of text already relayed."""
    parts: list[str] = []
    for payload in payloads:
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            continue
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            for key in ("content", "reasoning_content", "refusal"):
                if isinstance(delta.get(key), str):
                    parts.append(delta[key])
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                parts.append(str(function.get("name") or ""))
                parts.append(str(function.get("arguments") or ""))
    completion = exchange.services.tokens.count_text("".join(parts))
    return Usage(prompt_tokens=exchange.prompt_estimate(), completion_tokens=completion)


async def forward_json(
    exchange: Exchange,
    backend: Backend,
    path: str,
    body: dict[str, Any],
    response_headers: dict[str, str],
) -> Response:
    """A non-streaming request: relay the provider's body as is, bill its usage."""
    session = exchange.services.session
    timeout = aiohttp.ClientTimeout(total=backend.timeout_seconds, sock_connect=CONNECT_TIMEOUT)
    try:
        async with session.post(
            upstream_url(exchange, backend, path),
            data=orjson.dumps(body),
            headers=upstream_headers(backend),
            timeout=timeout,
        ) as upstream:
            raw = await upstream.read()
            status = upstream.status
            content_type = upstream.headers.get("Content-Type", "application/json")
    except (TimeoutError, aiohttp.ClientError) as error:
        raise _connection_error(exchange, error) from None
    if status >= 400:
        client_body, code = _upstream_error(status, raw)
        exchange.finish(None, status, code)
        return Response(client_body, status, response_headers, media_type="application/json")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    usage = Usage.from_openai(parsed.get("usage")) if isinstance(parsed, dict) else None
    if usage is None or usage.total_tokens == 0:
        exchange.finish(_estimate_whole(exchange, parsed), status, None, True)
    else:
        exchange.finish(usage, status)
    return Response(raw, status, response_headers, media_type=content_type)


def _estimate_whole(exchange: Exchange, parsed: Any) -> Usage:
    text = ""
    if isinstance(parsed, dict):
        for choice in parsed.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                text += message["content"]
    return Usage(
        prompt_tokens=exchange.prompt_estimate(),
        completion_tokens=exchange.services.tokens.count_text(text),
    )


async def forward_stream(
    exchange: Exchange,
    backend: Backend,
    path: str,
    body: dict[str, Any],
    response_headers: dict[str, str],
) -> Response:
    """A streaming request: relay SSE events as they come, bill the final usage chunk."""
    options = body.get("stream_options")
    client_wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    if not client_wants_usage:
        body = {
            **body,
            "stream_options": {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            },
        }
    session = exchange.services.session
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=CONNECT_TIMEOUT, sock_read=backend.timeout_seconds
    )
    try:
        upstream = await session.post(
            upstream_url(exchange, backend, path),
            data=orjson.dumps(body),
            headers=upstream_headers(backend),
            timeout=timeout,
        )
    except (TimeoutError, aiohttp.ClientError) as error:
        raise _connection_error(exchange, error) from None
    if upstream.status >= 400:
        try:
            raw = await upstream.read()
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        finally:
            upstream.release()
        client_body, code = _upstream_error(upstream.status, raw)
        exchange.finish(None, upstream.status, code)
        return Response(
            client_body, upstream.status, response_headers, media_type="application/json"
        )
    headers = {**response_headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _relay(exchange, upstream, drop_usage_chunk=not client_wants_usage),
        status_code=upstream.status,
        headers=headers,
        media_type="text/event-stream",
    )


async def _relay(
    exchange: Exchange,
    upstream: aiohttp.ClientResponse,
    drop_usage_chunk: bool,
) -> AsyncIterator[bytes]:
    usage: Usage | None = None
    payloads: list[bytes] = []
    event: list[bytes] = []
    status, error_code = 200, None
    complete = False
    try:
        async for line in upstream.content:
            if line in (b"\n", b"\r\n"):
                if event:
                    yield b"".join(event) + b"\n"
                    event = []
                continue
            if line.startswith(b"data:"):
                payload = line[5:].strip()
                if payload != b"[DONE]":
                    if b'"usage"' in payload and not any(n in payload for n in _NULL_USAGE):
                        chunk = orjson.loads(payload)
                        found = Usage.from_openai(chunk.get("usage"))
                        if found is not None:
                            usage = found
                        if drop_usage_chunk and not chunk.get("choices"):
                            continue  # the usage-only chunk the client did not ask for
                    payloads.append(payload)
                    exchange.mark_first_token()
            event.append(line)
        if event:
            yield b"".join(event) + b"\n"
        complete = True
    except asyncio.CancelledError:
        status, error_code = 499, "client_disconnected"
        raise
    except (TimeoutError, aiohttp.ClientError, orjson.JSONDecodeError) as error:
        status = 504 if isinstance(error, asyncio.TimeoutError) else 502
        error_code = "upstream_timeout" if status == 504 else "upstream_stream_cut"
        log.warning("stream %s cut: %s", exchange.request_id, type(error).__name__)
        with contextlib.suppress(Exception):
            message = f"upstream stream interrupted ({type(error).__name__})"
            yield b"data: " + error_body(message, "upstream_error", error_code) + b"\n\n"
    finally:
        if complete:
            upstream.release()  # the connection goes back to the pool
        else:
            upstream.close()  # unread data on it: never reuse
        if usage is not None and usage.total_tokens > 0:
            exchange.finish(usage, status, error_code)
        else:
            exchange.finish(
                _estimate(exchange, payloads),
                status,
                error_code or "usage_missing",
                estimated=True,
            )
