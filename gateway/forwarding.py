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
from llmbudget_gateway.errors import error_body
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


class UpstreamFailure(Exception):
    """An attempt that got no usable answer; the caller retries, falls back or answers it."""

    def __init__(
        self,
        status: int,
        code: str,
        body: bytes,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"upstream {status} {code}")
        self.status = status
        self.code = code
        self.body = body
        self.retry_after = retry_after
        self.headers = headers or {}

    @property
    def retryable(self) -> bool:
        """Worth another attempt on the same backend: rate limits, 5xx, timeouts, resets."""
        return self.status in (408, 409, 429) or self.status >= 500

    @property
    def client_error(self) -> bool:
        """The request itself is wrong: no other backend will do better."""
        return self.status in (400, 404, 413, 422)

    def response(self) -> Response:
        return Response(self.body, self.status, self.headers, media_type="application/json")


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _connection_failure(backend: Backend, error: BaseException) -> UpstreamFailure:
    if isinstance(error, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        status, code, message = (
            504,
            "upstream_timeout",
            f"upstream backend {backend.name} timed out",
        )
    elif isinstance(error, aiohttp.ClientConnectorError):
        status, code = 502, "upstream_unreachable"
        message = f"cannot connect to upstream backend {backend.name}"
    else:
        status, code = 502, "upstream_error"
        message = f"upstream backend {backend.name} failed: {type(error).__name__}"
    return UpstreamFailure(status, code, error_body(message, "upstream_error", code))


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
            retry_after = _retry_after(upstream.headers)
    except (TimeoutError, aiohttp.ClientError) as error:
        raise _connection_failure(backend, error) from None
    if status >= 400:
        client_body, code = _upstream_error(status, raw)
        raise UpstreamFailure(status, code, client_body, retry_after, response_headers)
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
        raise _connection_failure(backend, error) from None
    if upstream.status >= 400:
        retry_after = _retry_after(upstream.headers)
        try:
            raw = await upstream.read()
        except (TimeoutError, aiohttp.ClientError):
            raw = b""
        finally:
            upstream.release()
        client_body, code = _upstream_error(upstream.status, raw)
        raise UpstreamFailure(upstream.status, code, client_body, retry_after, response_headers)
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
