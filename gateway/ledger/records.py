"""What the ledger stores about each request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

WindowKey = tuple[str, str, int]  # (budget "namespace/name", period, window start ms)


@dataclass(slots=True)
class LedgerRecord:
    request_id: str
    ts_ms: int  # request start, epoch milliseconds (UTC)
    namespace: str
    key_name: str
    budgets: list[str] = field(default_factory=list)
    project: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    environment: str | None = None
    cost_center: str | None = None
    endpoint: str = "chat.completions"
    requested_model: str = ""
    routed_model: str = ""
    route: str = ""
    backend: str = ""
    provider: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status: int = 200
    error_code: str | None = None
    stream: bool = False
    estimated: bool = False
    unpriced: bool = False
    route_decision: str | None = None
    # Not a column: on a shared (PostgreSQL) ledger, the budget windows the request was
    # reserved on, as (budget, period, window start ms); writing the row settles them.
    windows: tuple[WindowKey, ...] = ()

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def row(self) -> tuple[Any, ...]:
        """The column values in COLUMNS order, budgets as a JSON array."""
        return (
            *self.values_before_budgets(),
            orjson.dumps(self.budgets).decode(),
            *self.values_after_budgets(),
        )

    def values_before_budgets(self) -> tuple[Any, ...]:
        """Column values in COLUMNS order, up to `budgets` (a test checks the order)."""
        return (self.request_id, self.ts_ms, self.namespace, self.key_name)

    def values_after_budgets(self) -> tuple[Any, ...]:
        return (
            self.project,
            self.user_id,
            self.session_id,
            self.environment,
            self.cost_center,
            self.endpoint,
            self.requested_model,
            self.routed_model,
            self.route,
            self.backend,
            self.provider,
            self.prompt_tokens,
            self.cached_tokens,
            self.cache_write_tokens,
            self.completion_tokens,
            self.reasoning_tokens,
            self.cost_micros,
            self.latency_ms,
            self.ttft_ms,
            self.status,
            self.error_code,
            self.stream,
            self.estimated,
            self.unpriced,
            self.route_decision,
        )


COLUMNS = (
    "request_id",
    "ts_ms",
    "namespace",
    "key_name",
    "budgets",
    "project",
    "user_id",
    "session_id",
    "environment",
    "cost_center",
    "endpoint",
    "requested_model",
    "routed_model",
    "route",
    "backend",
    "provider",
    "prompt_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cost_micros",
    "latency_ms",
    "ttft_ms",
    "status",
    "error_code",
    "stream",
    "estimated",
    "unpriced",
    "route_decision",
)
