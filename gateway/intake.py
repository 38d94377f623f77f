"""Reading and validating client requests: body size, JSON, the fields the gateway relies on."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from llmbudget_gateway.errors import GatewayError, bad_request
from llmbudget_gateway.runtime import Caller
from llmbudget_gateway.services import Services


async def read_json(request: Request, max_bytes: int) -> dict[str, Any]:
    """The JSON object body, refusing bodies over `max_bytes` before reading them whole."""
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_bytes
    ):
        raise GatewayError(
            413, f"request body is larger than {max_bytes} bytes", code="request_too_large"
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise GatewayError(
                    413,
                    f"request body is larger than {max_bytes} bytes",
                    code="request_too_large",
                )
            chunks.append(chunk)
    except ClientDisconnect:  # gone during the upload: nothing to answer, nothing to log
        raise GatewayError(
            499, "the client closed the connection during the upload", code="client_disconnected"
        ) from None
    raw = b"".join(chunks)
    if not raw:
        raise bad_request("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(
            f"request body is not valid JSON: {exc.msg} (at byte {exc.pos})", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    return body


def authenticate(services: Services, request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        token = request.headers.get("x-api-key", "").strip()  # Anthropic SDK style
    if not token:
        raise GatewayError(
            401,
            "Missing API key. Send it as 'Authorization: Bearer <key>'.",
            code="missing_api_key",
        )
    caller = services.runtime.authenticate(token, datetime.now(UTC))
    if caller is None:
        raise GatewayError(401, "Incorrect API key provided.", code="invalid_api_key")
    limit = services.runtime.rate_limit_for(caller)
    if limit is not None:
        wait = services.limiter.take((caller.namespace, caller.key_name), limit, time.monotonic())
        if wait is not None:
            services.metrics.rate_limited.labels(caller.namespace).inc()
            retry = services.limiter.retry_after(wait)
            raise GatewayError(
                429,
                f"Rate limit reached for key {caller.key_name} of namespace "
                f"{caller.namespace}: {limit.requests_per_minute} requests per minute "
                f"(burst {limit.burst}); retry in {retry} s",
                type="requests",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(retry)},
            )
    return caller


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required and must be a non-empty string", param="model")
    return model


def optional_positive_int(body: dict[str, Any], *names: str) -> int | None:
    """The first of `names` present, which must be a positive integer."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(f"'{name}' must be a positive integer", param=name)
        return value
    return None


def require_bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be a boolean", param=name)
    return value
