"""What a provider's failure becomes: a gateway error for the client, a redacted log line.

A provider's error text is never relayed as it is: it may quote the provider key or other
credentials, and its status would be misread (a provider 401 is not the client's key failing).
The client gets the gateway's own message and code; the log keeps the provider's text with
anything that looks like a secret replaced by `[redacted]`.

- 400, 413, 422 (the request itself is wrong): the same status, code
  `upstream_rejected_request`, the provider's message redacted; not retried;
- 401, 403: 502 `upstream_auth_failed` (the gateway's provider key, not the client's); 404: 502
  `upstream_not_found`; both go on to the fallbacks, not retried on the same backend;
- 408, 409, 5xx, connection failures: 502 `upstream_error` / `upstream_unreachable`, 504
  `upstream_timeout`; 429: 429 `upstream_rate_limited` with its Retry-After; all retried;
- a 200 that is not the JSON (or event stream) asked for: 502 `upstream_invalid_response`,
  billed at an estimate (docs/billing.md), not retried.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

import orjson

from llmbudget_gateway.errors import GatewayError

log = logging.getLogger("llmbudget.upstream")
REDACTED = "[redacted]"
MAX_LOGGED_CHARS = 600
MAX_RELAYED_CHARS = 300
# key-like strings: provider key prefixes, bearer tokens, long unbroken alphanumeric runs
_SECRETS = re.compile(
    r"(?i)(bearer\s+\S+|\b(?:sk|pk|rk|key|ak|api)[-_][A-Za-z0-9_\-]{6,}|[A-Za-z0-9_\-+/=]{24,})"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with the given secrets and anything key-like replaced by [redacted]."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _SECRETS.sub(REDACTED, text)


class UpstreamFailure(Exception):
    """An attempt that got no usable answer; the router retries, falls back or answers it.

    `billable`: the provider will bill it although nothing usable arrived (an answer cut after
    its 200, a timeout after the request was sent, a 200 that is not JSON). Such attempts are
    settled at an estimate and never retried: a retry would pay for the answer twice."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        client_error: bool = False,
        retry_after: float | None = None,
        billable: bool = False,
        whole_answer: bool = False,
        upstream_status: int | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable and not billable
        self.client_error = client_error
        self.retry_after = retry_after
        self.billable = billable
        # billable, and the provider may have generated the whole answer (not a stream that
        # never started, which stops generating when the gateway hangs up)
        self.whole_answer = whole_answer
        self.upstream_status = upstream_status if upstream_status is not None else status

    def error(self) -> GatewayError:
        headers = {}
        if self.retry_after is not None and self.status == 429:
            headers["Retry-After"] = str(max(int(self.retry_after + 0.999), 1))
        kind = "upstream_error" if self.status >= 500 else "invalid_request_error"
        if self.status == 429:
            kind = "rate_limit_error"
        return GatewayError(self.status, self.message, type=kind, code=self.code, headers=headers)


def _provider_text(raw: bytes) -> tuple[str, str]:
    """(type or code, message) of an OpenAI- or Anthropic-shaped error body, else ("", text)."""
    try:
        parsed: Any = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "", raw[:MAX_LOGGED_CHARS].decode("utf-8", "replace")
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):
        kind = error.get("code") or error.get("type") or ""
        return str(kind), str(error.get("message") or "")
    return "", raw[:MAX_LOGGED_CHARS].decode("utf-8", "replace")


def from_status(
    backend_name: str,
    status: int,
    raw: bytes,
    retry_after: float | None,
    secrets: Iterable[str] = (),
) -> UpstreamFailure:
    """The failure for a provider's error answer (status >= 400)."""
    secrets = list(secrets)
    kind, text = _provider_text(raw)
    log.warning(
        "backend %s answered HTTP %d: %s %s",
        backend_name,
        status,
        redact(kind, secrets),
        redact(text, secrets)[:MAX_LOGGED_CHARS],
    )
    if status in (400, 413, 422):
        detail = redact(text, secrets)[:MAX_RELAYED_CHARS] or f"HTTP {status}"
        return UpstreamFailure(
            status,
            "upstream_rejected_request",
            f"the provider rejected the request: {detail}",
            client_error=True,
        )
    if status in (401, 403):
        return UpstreamFailure(
            502,
            "upstream_auth_failed",
            f"the gateway's credentials for backend {backend_name} were refused by the "
            f"provider (HTTP {status}); this is not about your API key: tell the platform team",
            upstream_status=status,
        )
    if status == 404:
        return UpstreamFailure(
            502,
            "upstream_not_found",
            f"backend {backend_name} does not serve this model (provider HTTP 404)",
            upstream_status=status,
        )
    if status == 429:
        return UpstreamFailure(
            429,
            "upstream_rate_limited",
            f"the provider of backend {backend_name} is rate limiting the gateway; retry later",
            retryable=True,
            retry_after=retry_after,
        )
    retryable = status in (408, 409) or status >= 500
    return UpstreamFailure(
        502,
        "upstream_error",
        f"the provider of backend {backend_name} answered HTTP {status}",
        retryable=retryable,
        retry_after=retry_after,
        upstream_status=status,
    )


def invalid_answer(backend_name: str, what: str) -> UpstreamFailure:
    """A 200 whose body is not the JSON (or event stream) that was asked for."""
    log.warning("backend %s answered 200 with %s", backend_name, what)
    return UpstreamFailure(
        502,
        "upstream_invalid_response",
        f"backend {backend_name} answered with {what}, not a valid API response",
        billable=True,
        whole_answer=True,
        upstream_status=200,
    )
