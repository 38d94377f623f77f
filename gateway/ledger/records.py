"""What the ledger stores about each request."""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


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
