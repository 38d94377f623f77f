"""`POST /v1/messages`: the Anthropic Messages API for the `anthropic` SDK, metered like chat.

The body is checked and rebuilt from the fields of the Messages API (`MESSAGES_FIELDS`): the
gateway sets `model` (the backend's), and `max_tokens` and `stream` only as validated here,
since the reservation was made for them; anything else is refused with a 400 naming it.
Requests then take the same pipeline as every endpoint (pipeline.py): Downgrade budgets,
reservation at the dearest reachable backend, retries and fallbacks, settlement on every
failure. Answers and streams come back as they are; errors in Anthropic's shape. Models served
only by OpenAI-compatible backends are refused with a clear 400 (use /v1/chat/completions).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from llmbudget_gateway import pipeline
from llmbudget_gateway.adapters import Messages
from llmbudget_gateway.attribution import request_tags
from llmbudget_gateway.contract.config import Backend
from llmbudget_gateway.contract.specs import Provider
from llmbudget_gateway.errors import GatewayError, bad_request
from llmbudget_gateway.intake import authenticate, optional_positive_int, read_json, require_model
from llmbudget_gateway.relay import Adapter
from llmbudget_gateway.services import Services
from llmbudget_gateway.tokens import TOOL_USE_OVERHEAD

log = logging.getLogger("llmbudget.messages")
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    499: "invalid_request_error",
    504: "timeout_error",
}
MESSAGES_FIELDS = (
    "model", "messages", "max_tokens", "system", "metadata", "stop_sequences", "stream",
    "temperature", "top_p", "top_k", "tools", "tool_choice", "thinking",
)  # fmt: skip
_MESSAGES = Messages()


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
    """Upper bound of the prompt's tokens: its UTF-8 length (a BPE token is at least a byte),
    plus what tool use adds."""
    parts = {k: body.get(k) for k in ("messages", "system", "tools")}
    return len(orjson.dumps(parts)) + (TOOL_USE_OVERHEAD if body.get("tools") else 0)


def upstream_body(body: dict[str, Any], forward_fake: bool) -> dict[str, Any]:
    """The Messages request to send: validated, only the API's fields."""
    refused = sorted(set(body) - set(MESSAGES_FIELDS) - ({"fake"} if forward_fake else set()))
    if refused:
        raise bad_request(
            f"unsupported field(s) {', '.join(refused)}; the Messages API takes "
            f"{', '.join(MESSAGES_FIELDS)}",
            param=refused[0],
        )
    if optional_positive_int(body, "max_tokens") is None:
        raise bad_request("'max_tokens' is required", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad_request("'messages' must be a non-empty array", param="messages")
    for index, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise bad_request("each message must be an object with a 'role'", f"messages.{index}")
        if not isinstance(content, str | list):
            raise bad_request("'content' must be a string or an array", f"messages.{index}")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise bad_request("'stream' must be a boolean", param="stream")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise bad_request("'metadata' must be an object", param="metadata")
    user = (metadata or {}).get("user_id")
    if user is not None and not isinstance(user, str):
        raise bad_request("'metadata.user_id' must be a string", param="metadata.user_id")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise bad_request("'system' must be a string or an array of blocks", param="system")
    for name in ("tools", "stop_sequences"):
        if body.get(name) is not None and not isinstance(body[name], list):
            raise bad_request(f"'{name}' must be an array", param=name)
    return {k: v for k, v in body.items() if v is not None}


def _adapter(backend: Backend) -> Adapter | None:
    return _MESSAGES if backend.provider is Provider.ANTHROPIC else None


async def messages(request: Request) -> Response:
    services: Services = request.app.state.services
    caller = authenticate(services, request)
    raw = await read_json(request, services.settings.max_body_bytes)
    model = require_model(raw)
    body = upstream_body(raw, services.settings.forward_fake_scripts)
    user = (body.get("metadata") or {}).get("user_id")
    system = body.get("system")
    tools = orjson.dumps(body["tools"]).decode() if body.get("tools") else ""

    def exact_prompt() -> int:
        count = services.tokens.count_messages(body["messages"]) + services.tokens.count_text(
            system if isinstance(system, str) else orjson.dumps(system or "").decode()
        )
        return count + services.tokens.count_text(tools) + (TOOL_USE_OVERHEAD if tools else 0)

    call = pipeline.Call(
        endpoint="messages",
        model=model,
        body=body,
        stream=body.get("stream") is True,
        tags=request_tags(request.headers, {"user": user}),
        prompt_bound=_bound(body),
        max_output=body["max_tokens"],
        exact_prompt=exact_prompt,
        adapter_for=_adapter,
        unsupported=f"model '{model}' is served by OpenAI-compatible backends; use "
        "POST /v1/chat/completions for it",
    )
    return await pipeline.run(services, caller, call)
