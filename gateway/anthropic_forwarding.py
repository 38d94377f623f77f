"""Serving OpenAI chat requests from an Anthropic backend (Messages API), metered.

The request is translated (anthropic_translation.py), sent with `x-api-key` and
`anthropic-version`, and the answer translated back, streams included. Usage comes from
Anthropic's own counts (input, output, cache reads and writes); a cut stream is billed from an
estimate, as for OpenAI backends.
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

from llmbudget_gateway.anthropic_translation import (
    ANTHROPIC_VERSION,
    StreamTranslator,
    messages_url,
    to_anthropic_request,
    to_openai_response,
)
from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.errors import error_body
from llmbudget_gateway.forwarding import (
    CONNECT_TIMEOUT,
    UpstreamFailure,
    _connection_failure,
    _retry_after,
)
from llmbudget_gateway.metering import Exchange
from llmbudget_gateway.usage import Usage

log = logging.getLogger("llmbudget.anthropic")


def _headers(backend: Backend) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "anthropic-version": ANTHROPIC_VERSION,
        "accept-encoding": "identity",
    }
    if backend.api_key is not None:
        headers["x-api-key"] = backend.api_key.get_secret_value()
    return headers


def _url(exchange: Exchange, backend: Backend) -> str:
    return messages_url(exchange.services.settings.upstream_override or backend.base_url)


def _failure(
    status: int, raw: bytes, retry_after: float | None, headers: dict[str, str]
) -> UpstreamFailure:
    """Anthropic's {"type": "error", "error": {"type", "message"}} in OpenAI's shape."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        code = str(error.get("type") or f"upstream_{status}")
        message = str(error.get("message") or code)
    else:
        code, message = f"upstream_{status}", f"upstream provider answered HTTP {status}"
    return UpstreamFailure(
        status, code, error_body(message, "upstream_error", code), retry_after, headers
    )


async def post(
    exchange: Exchange, backend: Backend, payload: dict[str, Any], stream: bool
) -> aiohttp.ClientResponse:
    """POST a Messages request; connection failures become UpstreamFailure (retried)."""
    timeout = aiohttp.ClientTimeout(
        total=None if stream else backend.timeout_seconds,
        sock_connect=CONNECT_TIMEOUT,
        sock_read=backend.timeout_seconds,
    )
    try:
        return await exchange.services.session.post(
            _url(exchange, backend),
            data=orjson.dumps(payload),
            headers=_headers(backend),
            timeout=timeout,
        )
    except (TimeoutError, aiohttp.ClientError) as error:
        raise _connection_failure(backend, error) from None


async def read_whole(
    upstream: aiohttp.ClientResponse, backend: Backend, headers: dict[str, str]
) -> bytes:
    """The whole answer; an error status or a broken connection becomes UpstreamFailure."""
    try:
        raw = await upstream.read()
    except (TimeoutError, aiohttp.ClientError) as error:
        raise _connection_failure(backend, error) from None
    finally:
        upstream.release()
    if upstream.status >= 400:
        raise _failure(upstream.status, raw, _retry_after(upstream.headers), headers)
    return raw


async def forward_anthropic(
    exchange: Exchange,
    backend: Backend,
    path: str,
    body: dict[str, Any],
    response_headers: dict[str, str],
) -> Response:
    """Chat completion (`path` is the OpenAI one, unused) from an Anthropic backend."""
    settings = exchange.services.settings
    request = to_anthropic_request(body, backend.model, settings.default_max_tokens)
    stream = bool(body.get("stream"))
    upstream = await post(exchange, backend, request, stream)
    if upstream.status >= 400 or not stream:
        message = orjson.loads(await read_whole(upstream, backend, response_headers))
        usage = Usage.from_anthropic(message.get("usage"))
        exchange.finish(usage, 200)
        translated = to_openai_response(message, exchange.requested_model)
        return Response(
            orjson.dumps(translated), 200, response_headers, media_type="application/json"
        )
    options = body.get("stream_options")
    translator = StreamTranslator(
        exchange.requested_model,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )
    headers = {**response_headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _relay(exchange, upstream, translator), headers=headers, media_type="text/event-stream"
    )


async def _relay(
    exchange: Exchange, upstream: aiohttp.ClientResponse, translator: StreamTranslator
) -> AsyncIterator[bytes]:
    status, error_code, complete = 200, None, False
    kind = ""
    try:
        async for line in upstream.content:
            if line.startswith(b"event:"):
                kind = line[6:].strip().decode()
                continue
            if not line.startswith(b"data:"):
                continue
            data = orjson.loads(line[5:].strip())
            if kind == "error":
                raise aiohttp.ClientPayloadError(str(data.get("error")))
            for chunk in translator.event(kind, data):
                if chunk.get("choices") and kind == "content_block_delta":
                    exchange.mark_first_token()
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: [DONE]\n\n"
        complete = True
    except asyncio.CancelledError:
        status, error_code = 499, "client_disconnected"
        raise
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
        status = 504 if isinstance(error, TimeoutError) else 502
        error_code = "upstream_timeout" if status == 504 else "upstream_stream_cut"
        log.warning("stream %s cut: %s", exchange.request_id, type(error).__name__)
        with contextlib.suppress(Exception):
            message = f"upstream stream interrupted ({type(error).__name__})"
            yield b"data: " + error_body(message, "upstream_error", error_code) + b"\n\n"
    finally:
        if complete:
            upstream.release()
        else:
            upstream.close()
        usage = translator.usage
        if complete and usage is not None and usage.total_tokens > 0:
            exchange.finish(usage, status)
        else:
            estimate = Usage(
                prompt_tokens=(
                    usage.prompt_tokens
                    if usage and usage.prompt_tokens
                    else exchange.prompt_estimate()
                ),
                completion_tokens=exchange.services.tokens.count_text("".join(translator.text)),
            )
            exchange.finish(estimate, status, error_code or "usage_missing", estimated=True)
